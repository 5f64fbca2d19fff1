
import sys

sys.path.insert(0, '/work/wt-mlflow318/benchmarks')
import bench_overhead as b

from flowtel.tracing import _runtime

mode, case, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "bare":
    fn = b.bare_otel_cases()["small" if case == "start_span" else case]
else:
    held = b._HeldPipeline(keep=0)
    _runtime.set_destinations([_runtime.Destination(exporter=b._NullTraceExporter(), pipeline=held)])
    fn = b.flowtel_cases()[case]
for _ in range(300):
    fn()
for _ in range(n):
    fn()
