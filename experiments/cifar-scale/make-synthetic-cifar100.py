#!/usr/bin/env python3
"""Synthetic CIFAR-100 in the binary format at the real sizes: train.bin (50,000
records) and test.bin (10,000), each record a coarse label byte, a fine label byte and
3,072 pixel bytes (red, green, blue planes of 32 x 32). Pixels and labels are seeded
random: the point is memory, time and correctness at full size, not accuracy.

usage: make-synthetic-cifar100.py OUT_DIR [SEED]
"""
import os
import random
import sys


def write(path, n, rng):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        for _ in range(n):
            fine = rng.randrange(100)
            f.write(bytes([fine // 5, fine]))
            f.write(rng.randbytes(3072))
    os.replace(tmp, path)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.strip().splitlines()[-1])
    out = sys.argv[1]
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) == 3 else 0)
    os.makedirs(out, exist_ok=True)
    for name, n in (("train.bin", 50_000), ("test.bin", 10_000)):
        write(os.path.join(out, name), n, rng)


if __name__ == "__main__":
    main()
