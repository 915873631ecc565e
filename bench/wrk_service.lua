-- wrk script for the service's hot paths.
-- usage: wrk -s bench/wrk_service.lua URL -- MODE INSTALLATIONS [DELAY_MS] [KEYS_FILE_PREFIX]
--   MODE: support | quote | activate.  DELAY_MS > 0 paces each connection (fixed-rate runs).
--   activate: thread t reads its fresh keys from KEYS_FILE_PREFIX..t..".txt", one per line.
local mode, n, pause = "support", 10000, 0
local keys, next_key = {}, 0
local id = 0
function setup(thread) thread:set("tid", id); id = id + 1 end
function init(args)
  mode = args[1] or mode
  n = tonumber(args[2] or n)
  pause = tonumber(args[3] or 0)
  if mode == "activate" then
    for line in io.lines(args[4] .. tid .. ".txt") do keys[#keys + 1] = line end
  end
end
function delay() return pause end
local function code() return string.format("INST%09d", math.random(0, n - 1)) end
request = function()
  if mode == "support" then
    return wrk.format("GET", "/v1/installations/" .. code() .. "/support")
  elseif mode == "quote" then
    return wrk.format("GET", "/v1/installations/" .. code() .. "/quote")
  end
  next_key = next_key + 1
  local body = string.format('{"installation":"%s","keys":["%s"]}', code(), keys[next_key] or "TXS-0")
  -- Customers activate from their own addresses, through the proxy on 127.0.0.1 (TRUSTED_PROXIES): the
  -- limiter takes and gives back a place for each of them.
  local client = string.format("198.51.%d.%d", math.random(0, 255), math.random(1, 254))
  return wrk.format("POST", "/v1/activations", {["Content-Type"] = "application/json",
                                                ["X-Forwarded-For"] = client}, body)
end
