-- GET requests that each write something new: every request gets its own browser ID and its
-- own token, so a durable write lands on a new store key and the keys can be counted after.
--   wrk -s bench/lua/unique.lua URL -- RUN PATH_TEMPLATE COOKIE_TEMPLATE
-- In the templates @ID@ becomes a 22-character browser ID (16 bytes, canonical URL-safe
-- base64) and @N@ a 16-character token (12 bytes of URL-safe base64), both unique per request,
-- per wrk thread and per RUN number.
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local counter = 0
local threads = 0
local path_template, cookie_template, prefix

local function b64(n, width)
  local out = {}
  for i = width, 1, -1 do
    local d = n % 64
    out[i] = alphabet:sub(d + 1, d + 1)
    n = math.floor(n / 64)
  end
  return table.concat(out)
end

function setup(thread)
  thread:set("tid", threads)  -- a global in that thread's Lua state
  threads = threads + 1
end

function init(args)
  prefix = b64(tonumber(args[1] or "0"), 3) .. "bench" .. b64(tid, 3)  -- 11 characters
  path_template = args[2]
  cookie_template = args[3]
end

local headers = {
  ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
  ["Accept"] = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
}

function request()
  counter = counter + 1
  local c = b64(counter, 8)
  local id = prefix .. c .. "bmA"
  local token = c .. prefix:sub(1, 3) .. prefix:sub(9, 11) .. "bk"  -- run, thread
  headers["Cookie"] = "_ga=GA1.2.1234567890.1700000000; " .. cookie_template:gsub("@ID@", id)
  local path = path_template:gsub("@ID@", id):gsub("@N@", token)
  return wrk.format("GET", path, headers)
end
