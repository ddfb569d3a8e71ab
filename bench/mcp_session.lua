-- wrk script: MCP tools/call (or any JSON-RPC request) over Streamable HTTP, with sessions.
--
-- wrk has no per-connection hook, so bench/loadgen.py initializes one MCP session per
-- connection before the run (POST initialize, read Mcp-Session-Id, notifications/initialized)
-- and hands them over in MCPF_SESSIONS (comma-separated).  Each wrk thread takes its share
-- and rotates through them request by request, so each session carries about one request
-- at a time, as one client per connection would.  An empty MCPF_SESSIONS sends no session
-- header (stateless servers such as MCP Toolbox).
--
-- Environment:
--   MCPF_PATH      request path (/mcp/pg)
--   MCPF_METHOD    POST (default) or GET (for /healthz)
--   MCPF_BODY      JSON-RPC body; the text __ID__ is replaced by a per-thread request counter
--   MCPF_SESSIONS  session ids, comma-separated (may be empty)
--   MCPF_VERSION   MCP-Protocol-Version header (omitted when empty)
--   MCPF_HOST      Host header (default 127.0.0.1)
--   MCPF_HEADERS   extra headers, one "Name: value" per line (2026-07-28 stateless requests
--                  mirror the method and tool name in Mcp-Method / Mcp-Name)
--
-- done() prints one line "MCPF_RESULT {json}" that loadgen.py parses: requests, duration,
-- latency percentiles (microseconds), socket errors, non-2xx, and JSON-RPC / tool errors
-- found in 200 bodies ("isError":true or a top-level "error").

local threads = {}
local thread_count = 0

local function split(s)
   local out = {}
   if s == nil or s == "" then return out end
   for item in string.gmatch(s, "([^,]+)") do out[#out + 1] = item end
   return out
end

function setup(thread)
   thread:set("tid", thread_count)
   thread_count = thread_count + 1
   table.insert(threads, thread)
end

local sessions, nsessions, cursor, counter = {}, 0, 0, 0
local path, method, body_head, body_tail, has_id, base_headers
-- globals, so done() can read them from each thread with thread:get
rpc_errors, bad_status = 0, 0

function init(args)
   local all = split(os.getenv("MCPF_SESSIONS"))
   local nthreads = tonumber(os.getenv("MCPF_THREADS") or "1")
   -- this thread's share: sessions i, i + nthreads, i + 2 * nthreads, ...
   local i = tid + 1
   while i <= #all do
      sessions[#sessions + 1] = all[i]
      i = i + nthreads
   end
   nsessions = #sessions
   path = os.getenv("MCPF_PATH") or "/"
   method = os.getenv("MCPF_METHOD") or "POST"
   local body = os.getenv("MCPF_BODY") or ""
   local s, e = string.find(body, "__ID__", 1, true)
   has_id = s ~= nil
   if has_id then
      body_head = string.sub(body, 1, s - 1)
      body_tail = string.sub(body, e + 1)
   else
      body_head, body_tail = body, ""
   end
   base_headers = {["Host"] = os.getenv("MCPF_HOST") or "127.0.0.1"}
   if method == "POST" then
      base_headers["Content-Type"] = "application/json"
      base_headers["Accept"] = "application/json"
   end
   for line in string.gmatch(os.getenv("MCPF_HEADERS") or "", "[^\n]+") do
      local name, value = string.match(line, "^([^:]+):%s*(.*)$")
      if name then base_headers[name] = value end
   end
   local version = os.getenv("MCPF_VERSION") or ""
   if version ~= "" then base_headers["MCP-Protocol-Version"] = version end
   counter = tid * 100000000
end

function request()
   if nsessions > 0 then
      cursor = cursor % nsessions + 1
      base_headers["Mcp-Session-Id"] = sessions[cursor]
   end
   if method == "GET" then
      return wrk.format("GET", path, base_headers)
   end
   counter = counter + 1
   local body = body_head
   if has_id then body = body_head .. counter .. body_tail end
   return wrk.format("POST", path, base_headers, body)
end

function response(status, headers, body)
   if status ~= 200 then
      bad_status = bad_status + 1
   elseif body ~= nil and (string.find(body, '"isError":true', 1, true)
                           -- anchored: an unanchored pattern is tried at every '{' of the rows
                           or string.find(body, '^{"jsonrpc":"2.0","id":[^,]*,"error"')
                           or string.find(body, '"error":{"code"', 1, true)) then
      rpc_errors = rpc_errors + 1
   end
end

function done(summary, latency, requests)
   local rpc, status = 0, 0
   for _, t in ipairs(threads) do
      rpc = rpc + (t:get("rpc_errors") or 0)
      status = status + (t:get("bad_status") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'MCPF_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
      '"max_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
      '"status_errors":%d,"rpc_errors":%d,"bad_status":%d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout, e.status,
      rpc, status))
end
