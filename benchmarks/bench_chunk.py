"""Time the fused engine for several ``Kernel.chunk_size`` values (rows per step) on CPU.

The chunk bounds the engine's temporaries to O(chunk_size * n_path): small chunks pay a
per-step overhead, large ones leave the cache. For the 16x0e+8x1o+4x2e kernels and the
workloads of ``bench_conv.py`` (float32), prints the median milliseconds of an inference, a
train step and a force step for each chunk size, and marks the fastest train step; the
default of ``Kernel.chunk_size`` is chosen from this table.

    python benchmarks/bench_chunk.py                     # mol and big, 1 thread
    python benchmarks/bench_chunk.py --workloads mol --chunks 256 1024 --repeats 3
"""

from __future__ import annotations

import argparse

import torch
from bench_conv import KERNELS, STEPS, Ours, median_ms, steps, workload

CHUNKS = (128, 256, 512, 1024, 2048, 4096, 8192)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["mol", "big"], choices=["mol", "big"])
    parser.add_argument("--kernels", nargs="+", default=["fc-l2", "cw-l2"], choices=KERNELS)
    parser.add_argument("--chunks", nargs="+", type=int, default=list(CHUNKS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"fused engine, float32, {args.threads} thread(s), medians of {args.repeats} (ms)")
    for workload_name in args.workloads:
        pos, edge_index = workload(workload_name)
        for kernel_name in args.kernels:
            rs_in, rs_out, lmax, mode = KERNELS[kernel_name]
            torch.manual_seed(0)
            model = Ours(rs_in, rs_out, lmax, mode, engine="fused")
            fns = steps(model, pos, edge_index, rs_in, rs_out)
            print(
                f"\n{workload_name} ({pos.shape[0]} atoms, {edge_index.shape[1]} edges), "
                f"{kernel_name}: {rs_in} -> {rs_out}, {mode}"
            )
            print(f"  {'chunk_size':>10}" + "".join(f"{step:>12}" for step in STEPS))
            rows = []
            for chunk in args.chunks:
                model.kernel.chunk_size = chunk
                for fn in fns.values():
                    fn()  # warm-up at this chunk size
                rows.append([median_ms(fns[step], args.repeats) for step in STEPS])
            best = min(range(len(rows)), key=lambda i: rows[i][STEPS.index("train")])
            for i, (chunk, row) in enumerate(zip(args.chunks, rows)):
                mark = "  <- fastest train step" if i == best else ""
                print(f"  {chunk:>10}" + "".join(f"{ms:>12.2f}" for ms in row) + mark)


if __name__ == "__main__":
    main()
