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
require("ngx.base64") -- declares ngx_encode_base64url and ngx_decode_base64url

local byte, char, find, sub, gsub, format = string.byte, string.char, string.find, string.sub,
    string.gsub, string.format
local concat, tonumber = table.concat, tonumber
local ngx_var, ngx_header = ngx.var, ngx.header
local C = ffi.C

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
size_t strspn(const char *s, const char *accept);
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
local id = ffi.new("unsigned char[18]") -- the browser ID (22 base64 characters decode to 16)
local gid_text = ffi.new("unsigned char[28]") -- C || T in base64url (27 characters)
local src, dst = ffi.new("ngx_str_t[1]"), ffi.new("ngx_str_t[1]")

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

-- The same classes as strspn sets, so that the common case needs no loop of ours: a query
-- of these bytes only is printable, has nothing to decode and (but for a '=' in a value)
-- nothing to encode; a cookie header of PRINTABLE bytes only is printable ASCII.
local function byte_set(test)
    local out = {}
    for b = 1, 255 do
        if test(b) then
            out[#out + 1] = char(b)
        end
    end
    return concat(out)
end
local SAFE_QUERY = byte_set(function(b) return LITERAL[b] or b == 38 or b == 61 end) -- & =
local PRINTABLE = byte_set(function(b) return b >= 32 and b <= 126 end)
local B64URL_SET = byte_set(function(b) return B64URL[b] end)

local snapshot_path -- the snapshot, re-read when its version changes
local checked_at = 0 -- when this worker last looked at its version
local settings -- the snapshot's constants
local buyers = {} -- nid -> { cver, line, aes, inner, outer, http = {bare, before, after}, https }

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
    local cver = assert(tonumber(fields[3]))
    return {
        cver = cver,
        line = unhex(fields[2]) .. " " .. cver .. " ", -- the matches log's line, before the gid
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

local function reload()
    local version = version_of(snapshot_path)
    if version and version ~= settings.version then
        load(snapshot_path)
        ngx.log(ngx.INFO, "cookiematch edge: snapshot ", version, " loaded")
    end
end

-- At most once a second per worker: reload the snapshot if its version changed. The server
-- replaces the file atomically; a file that does not load (incomplete, unreadable) leaves
-- the buyers loaded before, and is tried again a second later. No closure in here: LuaJIT
-- 2.1 compiles no trace through a function that makes one, which left every match tag to
-- its interpreter.
local function refresh()
    local now = ngx.now()
    if now - checked_at < 1 then
        return
    end
    checked_at = now
    local ok, err = pcall(reload)
    if not ok then
        ngx.log(ngx.ERR, "cookiematch edge: the snapshot was not reloaded: ", err)
    end
end

-- The gid of the browser ID in `id` (protocol/userid.py): AES of the ID, 4 bytes of its
-- HMAC-SHA256, in base64url; in reused buffers.
local function gid(buyer)
    crypto.AES_encrypt(id, data, buyer.aes)
    ffi.copy(ctx, buyer.inner, CTX_SIZE)
    crypto.SHA256_Update(ctx, data, 16)
    crypto.SHA256_Final(inner, ctx)
    ffi.copy(ctx, buyer.outer, CTX_SIZE)
    crypto.SHA256_Update(ctx, inner, 32)
    crypto.SHA256_Final(digest, ctx)
    ffi.copy(data + 16, digest, 4)
    src[0].data, src[0].len = data, 20
    dst[0].data, dst[0].len = gid_text, 28
    C.ngx_encode_base64url(dst, src)
    return ffi.string(gid_text, dst[0].len)
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

-- The common shape of a match tag, read without a loop (LuaJIT compiles no trace of a
-- handler through one): `google_nid=<nid>&google_cm[=...]` then extras, the query of
-- SAFE_QUERY bytes only (nothing to decode), no other name starting with `google_`, no empty
-- name, no value with a '=' (nothing to encode). (nid, extras as one string), or nil when
-- the query is not of that shape: then the general reading below decides. Another
-- operation or a privacy parameter in the extras never gets here: $cm_maybe_match
-- (nginx.conf) proxies it, and with nothing escaped the names it read are these names.
local function read_common(query)
    if sub(query, 1, 11) ~= "google_nid=" then
        return nil
    end
    local amp = find(query, "&", 12, true)
    if not amp or amp == 12 or sub(query, amp + 1, amp + 9) ~= "google_cm" then
        return nil
    end
    local after, n = amp + 10, #query -- just after "google_cm"
    local c, extras_at = byte(query, after), nil
    if c == nil then
        extras_at = n + 1
    elseif c == 38 then -- '&'
        extras_at = after + 1
    elseif c == 61 then -- '=': google_cm's value, not read
        local next_amp = find(query, "&", after, true)
        extras_at = next_amp and next_amp + 1 or n + 1
    else
        return nil
    end
    if find(query, "google_", after, true) then
        return nil
    end
    local nid = sub(query, 12, amp - 1)
    if extras_at > n then
        return nid, ""
    end
    local extras = sub(query, extras_at)
    local first, last = byte(extras, 1), byte(extras, -1)
    if first == 38 or first == 61 or last == 38 or find(extras, "&&", 1, true)
        or find(extras, "&=", 1, true) or find(extras, "=[^&]*=")
        or #extras > settings.max_extras then
        return nil
    end
    return nid, extras
end

-- protocol/common_tag.py's read_common_tag: (nid, extras joined by '&') or nil.
local function read_tag(query)
    if #query > settings.max_query then
        return nil
    end
    local safe = tonumber(C.strspn(query, SAFE_QUERY)) == #query
    if safe then
        local nid, extras = read_common(query)
        if nid then
            return nid, extras
        end
    end
    local printable, slow = true, false
    if not safe then
        printable, slow = scan(query, 33, 126, true)
        if not printable then
            return nil -- a byte outside printable ASCII, or a '%' without two hex digits
        end
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
                local encoded
                if safe and not find(value, "=", 1, true) then
                    encoded = pair -- as encode_component writes it
                else
                    encoded = eq and (encode(name) .. "=" .. encode(value)) or encode(name)
                end
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
    return nid, concat(extras, "&")
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

-- The 22 characters at `at` in `header` decoded into `id` if they are an ID the exchange
-- formatted (protocol/cookies.py's parse_browser_id): true, or nil.
local function read_id(header, at)
    if not ID_LAST[byte(header, at + 21)] then
        return nil -- OPT_OUT, or not an ID the exchange formatted
    end
    local value = ffi.cast("const char *", header) + (at - 1)
    if tonumber(C.strspn(value, B64URL_SET)) < 21 then
        return nil
    end
    src[0].data, src[0].len = value, 22
    dst[0].data, dst[0].len = id, 18
    return C.ngx_decode_base64url(dst, src) == 0 and dst[0].len == 16 or nil
end

-- protocol/cookies.py's read_id_cookie then parse_browser_id: true with the 16-byte ID in
-- `id`, or nil.
local function browser_id(header)
    local n = #header
    if n > settings.max_cookie or tonumber(C.strspn(header, PRINTABLE)) ~= n then
        return nil
    end
    local name = settings.cookie_name
    local at = find(header, name, 1, true)
    if not at then
        return nil
    end
    -- The common shape, without a loop: the name's first occurrence starts the header or
    -- follows "; " or ";", its '=' right after it, 22 characters up to the next ';' or the
    -- end. Anything else is read by the general loop.
    local v, before = at + #name + 1, byte(header, at - 1)
    if byte(header, v - 1) == 61
        and (at == 1 or before == 59 or (before == 32 and (at == 2 or byte(header, at - 2) == 59)))
        and (n == v + 21 or (n > v + 21 and byte(header, v + 22) == 59)) then
        return read_id(header, v)
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
                if vj - vi + 1 ~= 22 then
                    return nil -- OPT_OUT, or not an ID the exchange formatted
                end
                return read_id(header, vi)
            end
        end
        start = stop + 1
    end
    return nil
end

-- The Location of a common-case match tag and its line in the matches log, or nil (then the
-- server answers). The request is a GET ($cm_maybe_match in nginx.conf).
local function locate()
    if ngx_var.http_sec_gpc then
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
    if not cookie or not browser_id(cookie) then
        return nil
    end
    local scheme = ngx_var.scheme
    local shape = (scheme == "https" and buyer.https) or (scheme == "http" and buyer.http)
    if not shape then
        return nil
    end
    local g = gid(buyer)
    if extras == "" then
        return concat(shape[1], g), buyer.line .. g
    end
    return concat(shape[2], g) .. extras .. concat(shape[3], g), buyer.line .. g
end

-- /pixel's access phase: answer the common case, or return and let nginx proxy. Not under
-- pcall (LuaJIT 2.1 leaves a return through it to the interpreter): an error here makes
-- nginx's 500, which nginx.conf's error_page turns into the proxied request, and is logged
-- in error.log; the browser never sees an error of the edge's.
function M.pixel()
    refresh()
    local location, line = locate()
    if not location then
        return -- the server answers it, and counts it ($cm_match stays empty)
    end
    ngx_var.cm_match = line -- logged once answered
    ngx.status = 302
    ngx_header["Location"] = location
    ngx_header["Cache-Control"] = "no-store"
    ngx_header["Content-Length"] = 0
    ngx.send_headers()
    return ngx.exit(ngx.HTTP_OK)
end

return M
