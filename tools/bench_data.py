"""Throughput of the training data pipeline (decode + augment + collate) and how much of a
training step waits for data.

    python tools/bench_data.py --data-root demo_data --crop-size 512 --workers 0 1 2
    python tools/bench_data.py --data-root ~/data --split train_aug --workers 4 8 --step --encoder repeat_r18_f4 --device cuda

Prints images/s for each worker count (and per worker); with --step, also trains the U-Net for
--batches steps and prints the share of step time spent waiting for the next batch.
"""

from __future__ import annotations

import argparse
import sys
import time

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--crop-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--step", action="store_true", help="also measure the data-wait share of training steps")
    parser.add_argument("--encoder", default="repeat_r18_f4")
    parser.add_argument("--device", default="auto")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import repeatseg
from repeatseg.data import IGNORE_INDEX, DataError, VOCSegmentation, to_device, train_transform
from repeatseg.engine.distributed import resolve_device


def loader(args, workers: int) -> DataLoader:
    dataset = VOCSegmentation(args.data_root, args.split, transform=train_transform(args.crop_size))
    return DataLoader(dataset, args.batch_size, shuffle=True, num_workers=workers, drop_last=True,
                      persistent_workers=False, generator=torch.Generator().manual_seed(0))


def pipeline_rate(args, workers: int) -> float:
    iterator = iter(loader(args, workers))
    next(iterator)  # worker start-up is not throughput
    start, images = time.perf_counter(), 0
    for _ in range(args.batches):
        images += next(iterator)[0].shape[0]
    return images / (time.perf_counter() - start)


def wait_share(args, workers: int) -> tuple[float, float]:
    device = resolve_device(args.device)
    model = repeatseg.build_segmenter(args.encoder, classes=21).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    iterator = iter(loader(args, workers))
    next(iterator)
    waited, start = 0.0, time.perf_counter()
    for _ in range(args.batches):
        t = time.perf_counter()
        images, masks, _ = next(iterator)
        waited += time.perf_counter() - t
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(to_device(images, device))
        loss = F.cross_entropy(logits.float(), masks.to(device).long(), ignore_index=IGNORE_INDEX)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    total = time.perf_counter() - start
    return waited / total, args.batches * args.batch_size / total


def main(args: argparse.Namespace) -> int:
    try:
        VOCSegmentation(args.data_root, args.split)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"pipeline: {args.split} split, crop {args.crop_size}, batch {args.batch_size}, {args.batches} batches")
    print(f"{'workers':>8} {'images/s':>10} {'per worker':>11}")
    for workers in args.workers:
        rate = pipeline_rate(args, workers)
        print(f"{workers:>8} {rate:>10.1f} {rate / max(workers, 1):>11.1f}", flush=True)
    if args.step:
        for workers in args.workers:
            share, rate = wait_share(args, workers)
            print(f"training {args.encoder} with {workers} workers: {rate:.1f} images/s, "
                  f"{100 * share:.1f}% of step time waiting for data", flush=True)
    return 0


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
