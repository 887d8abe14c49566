-- wrk script: GET /recommend/<random known product id>[?n=N] and a JSON summary at the end.
-- usage: WRK_JSON_OUT=out.json wrk -t1 -c100 -d30s -s loadtest/wrk_random.lua http://127.0.0.1:PORT -- IDS_FILE [N]
-- IDS_FILE holds one known product id per line (the runner writes it from the cache); N defaults to the
-- service default (omit ?n=); the JSON summary goes to stdout (a WRK_JSON line) and to $WRK_JSON_OUT if set.
-- With $WRK_API_KEY set every request carries "Authorization: Bearer <key>" (the service's API keys).

local ids = {}
local query = ""

local function load_ids(path)
  local list = {}
  for line in io.lines(path) do
    if #line > 0 then list[#list + 1] = line end
  end
  return list
end

function init(args)
  ids = load_ids(args[1])
  if args[2] and args[2] ~= "" and args[2] ~= "default" then query = "?n=" .. args[2] end
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0))
  local key = os.getenv("WRK_API_KEY")
  if key and #key > 0 then wrk.headers["Authorization"] = "Bearer " .. key end
end

function request()
  return wrk.format("GET", "/recommend/" .. ids[math.random(#ids)] .. query)
end

function done(summary, latency, requests)
  local path = os.getenv("WRK_JSON_OUT")
  local e = summary.errors
  local dur_s = summary.duration / 1e6
  local text = string.format(
    '{"requests": %d, "duration_s": %.3f, "rps": %.2f, "bytes": %d, ' ..
    '"latency_ms": {"mean": %.3f, "stdev": %.3f, "p50": %.3f, "p75": %.3f, "p90": %.3f, "p99": %.3f, "p999": %.3f, "max": %.3f}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}',
    summary.requests, dur_s, summary.requests / dur_s, summary.bytes,
    latency.mean / 1000, latency.stdev / 1000, latency:percentile(50) / 1000, latency:percentile(75) / 1000,
    latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    latency.max / 1000, e.connect, e.read, e.write, e.status, e.timeout)
  if path and #path > 0 then
    local f = assert(io.open(path, "w"))
    f:write(text .. "\n")
    f:close()
  end
  io.write("WRK_JSON " .. text .. "\n")
end
