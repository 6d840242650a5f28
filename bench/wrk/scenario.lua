-- One load scenario for wrk, configured by environment variables (bench/run.py sets them):
--   WRK_METHOD      GET (default) or POST
--   WRK_PATHS       a file of request paths, one a line, taken round-robin (default: the URL's path)
--   WRK_HEADERS     a file of "Name: value" lines sent with every request
--   WRK_BODY        a file whose content is every request's body
--   WRK_KEYS        a file of Idempotency-Key values taken round-robin (replays)
--   WRK_NEW_KEYS    a prefix: every request gets a new Idempotency-Key <prefix>-<thread>-<n>
-- done() prints one line "WRK_RESULT {json}" with the counts and latency percentiles (microseconds).

local function lines(name)
  local out = {}
  local path = os.getenv(name)
  if path == nil or path == "" then return out end
  for line in io.lines(path) do
    if line ~= "" then out[#out + 1] = line end
  end
  return out
end

local function slurp(name)
  local path = os.getenv(name)
  if path == nil or path == "" then return nil end
  local f = assert(io.open(path, "rb"))
  local content = f:read("*a")
  f:close()
  return content
end

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
  table.insert(threads, thread)
end

local paths, keys, headers, body, method, new_keys
local turn = 0

function init(args)
  method = os.getenv("WRK_METHOD") or "GET"
  paths = lines("WRK_PATHS")
  keys = lines("WRK_KEYS")
  new_keys = os.getenv("WRK_NEW_KEYS")
  if new_keys == "" then new_keys = nil end
  body = slurp("WRK_BODY")
  headers = {}
  for _, line in ipairs(lines("WRK_HEADERS")) do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    headers[name] = value
  end
  -- Threads start at different places in the lists, so they do not move in step.
  turn = (thread_id or 1) * 7919
end

function request()
  turn = turn + 1
  local path = nil
  if #paths > 0 then path = paths[(turn % #paths) + 1] end
  if new_keys ~= nil then
    headers["Idempotency-Key"] = new_keys .. "-" .. (thread_id or 1) .. "-" .. turn
  elseif #keys > 0 then
    headers["Idempotency-Key"] = keys[(turn % #keys) + 1]
  end
  return wrk.format(method, path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
