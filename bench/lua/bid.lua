-- POST /bid with an OpenRTB 2.6 bid request read from the file named by $BENCH_BODY (the same
-- body every time; a static request, as cheap for wrk as a GET).
--   BENCH_BODY=request.json wrk -s bench/lua/bid.lua URL
wrk.method = "POST"
wrk.path = "/bid"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-openrtb-version"] = "2.6"
local f = assert(io.open(assert(os.getenv("BENCH_BODY"), "set BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
