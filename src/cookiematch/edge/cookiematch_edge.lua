-- cookiematch's edge: the pure cookie match answered in nginx (docs/edge.md).
--
-- Rendered beside nginx.conf by `cookiematch edge render`. `init(path)` reads the snapshot
-- (in nginx's master, before the workers start); `pixel()` runs in /pixel's access phase and
-- either answers the match tag's common case with its 302 (and sets $cm_match, the line the
-- matches log gets: "<nid> <cver> <gid>") or returns, and nginx proxies the request to
-- cookiematch unchanged. It answers exactly what the Python flat path answers
-- (src/cookiematch/web/exchange/direct_pixel.py, protocol/common_tag.py, protocol/cookies.py,
-- protocol/userid.py, protocol/gid_redirect.py), only more conservatively: whatever it is not
-- sure of (non-ASCII text, control characters, a privacy signal, an unknown buyer...) goes to
-- the server. The constants and the buyers' pieces come from the key file, written by the
-- Python code they belong to.

local ffi = require("ffi")
local base64 = require("ngx.base64")

local byte, char, find, sub, gsub, format = string.byte, string.char, string.find, string.sub,
    string.gsub, string.format
local concat, tonumber = table.concat, tonumber
local ngx_var, ngx_header = ngx.var, ngx.header
local encode_base64url, decode_base64url = base64.encode_base64url, base64.decode_base64url

ffi.cdef([[
typedef struct { unsigned int rd_key[60]; int rounds; } cm_AES_KEY;
int AES_set_encrypt_key(const unsigned char *key, const int bits, cm_AES_KEY *aes);
void AES_encrypt(const unsigned char *in, unsigned char *out, const cm_AES_KEY *aes);
typedef struct {
    unsigned int h[8]; unsigned int Nl, Nh; unsigned int data[16]; unsigned int num, md_len;
} cm_SHA256_CTX;
int SHA256_Init(cm_SHA256_CTX *c);
int SHA256_Update(cm_SHA256_CTX *c, const void *data, size_t len);
int SHA256_Final(unsigned char *md, cm_SHA256_CTX *c);
]])

local ok, crypto = pcall(ffi.load, "crypto")
if not ok then
    crypto = ffi.load("libcrypto.so.3")
end

local CTX_SIZE = ffi.sizeof("cm_SHA256_CTX")
local ctx = ffi.new("cm_SHA256_CTX")
local data = ffi.new("unsigned char[20]") -- C || T
local inner = ffi.new("unsigned char[32]")
local digest = ffi.new("unsigned char[32]")

local M = {}

-- Byte classes as lookup tables: loops over string.byte are compiled by LuaJIT, string
-- patterns with classes are not.
local LITERAL, B64URL, HEX = {}, {}, {} -- encode_component keeps LITERAL bytes as they are
for b = 0, 255 do
    local c = char(b)
    local alnum = find(c, "^[A-Za-z0-9]$") ~= nil
    LITERAL[b] = alnum or find(c, "^[%._~,%-]$") ~= nil
    B64URL[b] = alnum or c == "_" or c == "-"
    HEX[b] = find(c, "^[0-9A-Fa-f]$") ~= nil
end
local ID_LAST = { [65] = true, [81] = true, [103] = true, [119] = true } -- A Q g w

local snapshot_path -- the snapshot, re-read when its version changes
local checked_at = 0 -- when this worker last looked at its version
local settings -- the snapshot's constants
local buyers = {} -- nid -> { cver, aes, inner, outer, http = {bare, before, after}, https }

local function unhex(text)
    return (gsub(text, "%x%x", function(h) return char(tonumber(h, 16)) end))
end

local function split(text, sep)
    local out, start = {}, 1
    while true do
        local at = find(text, sep, start, true)
        if not at then
            out[#out + 1] = sub(text, start)
            return out
        end
        out[#out + 1] = sub(text, start, at - 1)
        start = at + #sep
    end
end

local function hex_list(field)
    local out = split(field, ",")
    for i = 1, #out do
        out[i] = unhex(out[i])
    end
    return out
end

local function hmac_pad(key, pad)
    local padded = ffi.new("unsigned char[64]")
    for i = 0, 63 do
        padded[i] = bit.bxor(i < #key and byte(key, i + 1) or 0, pad)
    end
    local state = ffi.new("cm_SHA256_CTX")
    crypto.SHA256_Init(state)
    crypto.SHA256_Update(state, padded, 64)
    return state
end

local function new_buyer(fields)
    local enc, mac = unhex(fields[4]), unhex(fields[5])
    local aes = ffi.new("cm_AES_KEY")
    if #enc ~= 32 or crypto.AES_set_encrypt_key(enc, 256, aes) ~= 0 then
        error("cookiematch edge: bad key for buyer " .. unhex(fields[2]))
    end
    return {
        cver = assert(tonumber(fields[3])),
        aes = aes,
        inner = hmac_pad(mac, 0x36),
        outer = hmac_pad(mac, 0x5c),
        http = { hex_list(fields[6]), hex_list(fields[7]), hex_list(fields[8]) },
        https = { hex_list(fields[9]), hex_list(fields[10]), hex_list(fields[11]) },
    }
end

-- Read the snapshot (format: src/cookiematch/edge/snapshot.py): tab-separated, hex fields;
-- only a whole one (its `end` line repeats its `version`) is taken, else this raises.
local function load(path)
    local file = assert(io.open(path, "r"))
    local loaded, seen = {}, {}
    for line in file:lines() do
        local fields = split(line, "\t")
        local kind = fields[1]
        if kind == "buyer" then
            loaded[unhex(fields[2])] = new_buyer(fields)
        elseif kind ~= "" and sub(kind, 1, 1) ~= "#" then
            seen[kind] = fields
        end
    end
    file:close()
    local version = assert(seen.version, "no version")[2]
    assert(seen["end"] and seen["end"][2] == version, "an incomplete snapshot")
    local limits, names = assert(seen.limits), {}
    for _, name in ipairs(hex_list(assert(seen.privacy)[2])) do
        names[name] = "privacy"
    end
    for _, name in ipairs(hex_list(assert(seen.operations)[2])) do
        names[name] = "operation"
    end
    settings = {
        max_query = tonumber(limits[2]),
        max_extras = tonumber(limits[3]),
        max_cookie = tonumber(limits[4]),
        cookie_name = unhex(assert(seen.cookie)[2]),
        names = names,
        version = version,
    }
    buyers = loaded
end

function M.init(path)
    snapshot_path = path
    load(path)
end

local function version_of(path) -- the snapshot's `version` line, or nil
    local file = assert(io.open(path, "r")) -- unreadable: not given to nginx's user?
    local version
    for line in file:lines() do
        local fields = split(line, "\t")
        if fields[1] == "version" then
            version = fields[2]
            break
        elseif sub(fields[1], 1, 1) ~= "#" then
            break
        end
    end
    file:close()
    return version
end

-- At most once a second per worker: reload the snapshot if its version changed. The server
-- replaces the file atomically; a file that does not load (incomplete, unreadable) leaves
-- the buyers loaded before, and is tried again a second later.
local function refresh()
    local now = ngx.now()
    if now - checked_at < 1 then
        return
    end
    checked_at = now
    local ok, err = pcall(function()
        local version = version_of(snapshot_path)
        if version and version ~= settings.version then
            load(snapshot_path)
            ngx.log(ngx.INFO, "cookiematch edge: snapshot ", version, " loaded")
        end
    end)
    if not ok then
        ngx.log(ngx.ERR, "cookiematch edge: the snapshot was not reloaded: ", err)
    end
end

local function gid(buyer, browser_id)
    crypto.AES_encrypt(browser_id, data, buyer.aes)
    ffi.copy(ctx, buyer.inner, CTX_SIZE)
    crypto.SHA256_Update(ctx, data, 16)
    crypto.SHA256_Final(inner, ctx)
    ffi.copy(ctx, buyer.outer, CTX_SIZE)
    crypto.SHA256_Update(ctx, inner, 32)
    crypto.SHA256_Final(digest, ctx)
    ffi.copy(data + 16, digest, 4)
    return encode_base64url(ffi.string(data, 20))
end

-- A name or value with '%' or '+', decoded as protocol/query.py's decode_component; nil for
-- what the edge leaves to the server (bytes outside printable ASCII once decoded).
local function decode(text)
    text = gsub(gsub(text, "%+", " "), "%%(%x%x)", function(h) return char(tonumber(h, 16)) end)
    if find(text, "[^\32-\126]") then
        return nil
    end
    return text
end

local function escape(c)
    return format("%%%02X", byte(c))
end

local function encode(text) -- protocol/query.py's encode_component on ASCII
    for i = 1, #text do
        if not LITERAL[byte(text, i)] then
            return (gsub(text, "[^A-Za-z0-9%._~,%-]", escape))
        end
    end
    return text
end

-- Whether every byte of `text` is within lo..hi (and, for a query, each '%' is followed by
-- two hex digits); then whether it has a '%' or a '+'.
local function scan(text, lo, hi, query)
    local slow, n = false, #text
    for i = 1, n do
        local b = byte(text, i)
        if b < lo or b > hi then
            return false
        end
        if b == 37 and query then -- '%'
            if i + 2 > n or not HEX[byte(text, i + 1)] or not HEX[byte(text, i + 2)] then
                return false
            end
            slow = true
        elseif b == 43 then -- '+'
            slow = true
        end
    end
    return true, slow
end

local function has_escape(text)
    return find(text, "%", 1, true) or find(text, "+", 1, true)
end

-- protocol/common_tag.py's read_common_tag: (nid, extras) or nil.
local function read_tag(query)
    if #query > settings.max_query then
        return nil
    end
    local printable, slow = scan(query, 33, 126, true)
    if not printable then
        return nil -- a byte outside printable ASCII, or a '%' without two hex digits
    end
    local names, max_extras = settings.names, settings.max_extras
    local nid, cookie_match, extras, size = nil, false, {}, -1
    local start, length = 1, #query
    while start <= length + 1 do
        local stop = find(query, "&", start, true) or (length + 1)
        local pair = sub(query, start, stop - 1)
        start = stop + 1
        local eq = find(pair, "=", 1, true)
        local name, value
        if eq then
            name, value = sub(pair, 1, eq - 1), sub(pair, eq + 1)
        else
            name, value = pair, ""
        end
        if name ~= "" then
            if slow then
                if has_escape(name) then
                    name = decode(name)
                end
                if has_escape(value) then
                    value = decode(value)
                end
                if not name or not value then
                    return nil
                end
            end
            if sub(name, 1, 7) == "google_" then
                if name == "google_nid" then
                    if nid or value == "" then
                        return nil
                    end
                    nid = value
                elseif name == "google_cm" then
                    cookie_match = true
                elseif names[name] == "operation" then
                    return nil
                end
            else
                if names[name] == "privacy" then
                    return nil
                end
                local encoded = eq and (encode(name) .. "=" .. encode(value)) or encode(name)
                size = size + 1 + #encoded
                if size > max_extras then
                    return nil
                end
                extras[#extras + 1] = encoded
            end
        end
    end
    if not nid or not cookie_match then
        return nil
    end
    return nid, extras
end

local function trim(text, i, j) -- text[i..j] without the spaces around it
    while i <= j and byte(text, i) == 32 do
        i = i + 1
    end
    while j >= i and byte(text, j) == 32 do
        j = j - 1
    end
    return i, j
end

-- protocol/cookies.py's read_id_cookie then parse_browser_id: the 16-byte ID, or nil.
local function browser_id(header)
    local n = #header
    if n > settings.max_cookie or not scan(header, 32, 126, false) then
        return nil
    end
    local name = settings.cookie_name
    if not find(header, name, 1, true) then
        return nil
    end
    local start = 1
    while start <= n + 1 do
        local stop = find(header, ";", start, true) or (n + 1)
        local eq = find(header, "=", start, true)
        if eq and eq < stop then
            local ki, kj = trim(header, start, eq - 1)
            if sub(header, ki, kj) == name then
                local vi, vj = trim(header, eq + 1, stop - 1)
                if vj - vi >= 1 and byte(header, vi) == 34 and byte(header, vj) == 34 then
                    vi, vj = vi + 1, vj - 1
                end
                if vj - vi + 1 ~= 22 or not ID_LAST[byte(header, vj)] then
                    return nil -- OPT_OUT, or not an ID the exchange formatted
                end
                for i = vi, vj - 1 do
                    if not B64URL[byte(header, i)] then
                        return nil
                    end
                end
                return decode_base64url(sub(header, vi, vj))
            end
        end
        start = stop + 1
    end
    return nil
end

-- The Location of a common-case match tag, or nil (then the server answers).
local function locate()
    if ngx.req.get_method() ~= "GET" or ngx_var.http_sec_gpc then
        return nil
    end
    local uri = ngx_var.request_uri
    if sub(uri, 1, 7) ~= "/pixel?" then
        return nil
    end
    local nid, extras = read_tag(sub(uri, 8))
    if not nid then
        return nil
    end
    local buyer = buyers[nid]
    if not buyer then
        return nil
    end
    local cookie = ngx_var.http_cookie
    if not cookie then
        return nil
    end
    local id = browser_id(cookie)
    if not id or #id ~= 16 then
        return nil
    end
    local scheme = ngx_var.scheme
    local shape = (scheme == "https" and buyer.https) or (scheme == "http" and buyer.http)
    if not shape then
        return nil
    end
    local g = gid(buyer, id)
    ngx_var.cm_match = nid .. " " .. buyer.cver .. " " .. g -- logged once answered
    if #extras == 0 then
        return concat(shape[1], g)
    end
    return concat(shape[2], g) .. concat(extras, "&") .. concat(shape[3], g)
end

-- /pixel's access phase: answer the common case, or return and let nginx proxy. A failure
-- here is logged and the request proxied: the browser never sees an error of the edge's.
function M.pixel()
    refresh()
    local ok, location = pcall(locate)
    if not ok or not location then
        if not ok then
            ngx.log(ngx.ERR, "cookiematch edge: ", location, "; proxied")
        end
        ngx_var.cm_match = "" -- the server answers it, and counts it
        return
    end
    ngx.status = 302
    ngx_header["Location"] = location
    ngx_header["Cache-Control"] = "no-store"
    ngx_header["Content-Length"] = 0
    ngx.send_headers()
    return ngx.exit(ngx.HTTP_OK)
end

return M
