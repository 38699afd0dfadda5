-- One wrk script for every API benchmark, configured by environment variables:
--   WRK_METHOD     GET | POST | PUT
--   WRK_PATH       request path; "{id}" is replaced by the next id of WRK_IDS_FILE
--   WRK_HEADERS    "Name: value" lines
--   WRK_BODY_FILE  request body (read once)
--   WRK_IDS_FILE   one id per line; thread t of n takes ids t, t + n, ... and starts again at the end
--   WRK_THREADS    the -t value (to split the ids)
--   WRK_IDEMPOTENCY_PREFIX  when set, every request carries a new "Idempotency-Key: <prefix>-<thread>-<n>"
-- done() prints one line "WRKJSON {...}" with the counts and latency percentiles in microseconds.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

function init(args)
  method = os.getenv("WRK_METHOD") or "GET"
  path = os.getenv("WRK_PATH") or "/"
  headers = {}
  for line in string.gmatch(os.getenv("WRK_HEADERS") or "", "[^\n]+") do
    local name, value = string.match(line, "^([^:]+):%s*(.*)$")
    if name then headers[name] = value end
  end
  local body_file = os.getenv("WRK_BODY_FILE")
  body = nil
  if body_file and body_file ~= "" then body = read_file(body_file) end
  ids = {}
  local ids_file = os.getenv("WRK_IDS_FILE")
  if ids_file and ids_file ~= "" then
    local n = tonumber(os.getenv("WRK_THREADS") or "1")
    local i = 0
    for line in io.lines(ids_file) do
      if i % n == tid then table.insert(ids, line) end
      i = i + 1
    end
  end
  next_id = 1
  sent = 0
  idempotency = os.getenv("WRK_IDEMPOTENCY_PREFIX")
  if idempotency == "" then idempotency = nil end
  if #ids == 0 and not idempotency then
    fixed = wrk.format(method, path, headers, body)
  end
end

function request()
  if fixed then return fixed end
  local p = path
  if #ids > 0 then
    p = string.gsub(path, "{id}", ids[next_id])
    next_id = next_id + 1
    if next_id > #ids then next_id = 1 end
  end
  if idempotency then
    sent = sent + 1
    headers["Idempotency-Key"] = idempotency .. "-" .. tid .. "-" .. sent
  end
  return wrk.format(method, p, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50": %d, "p90": %d, "p99": %d, "max": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
