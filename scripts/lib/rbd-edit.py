#!/usr/bin/python3
"""Writes into an RBD image through librbd (Debian's python3-rbd), for tests and benchmarks:
the guest writes a VM would make, at exact offsets.

  rbd-edit.py CONF USER KEYRING POOL IMAGE OP...

OP is one of
  create:SIZE                   create the image (bytes; K/M/G/T suffixes)
  fill:OFFSET:LENGTH:BYTE       write LENGTH bytes of BYTE (0x.. or decimal)
  random:OFFSET:LENGTH:SEED     write LENGTH pseudo-random bytes (reproducible from SEED)
  discard:OFFSET:LENGTH         discard (reads as zeros afterwards)
  snap:NAME                     create a snapshot
"""
import random
import sys

import rados
import rbd


def number(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if text[-1:].upper() in units:
        return int(text[:-1], 0) * units[text[-1:].upper()]
    return int(text, 0)


def main():
    conf, user, keyring, pool, name = sys.argv[1:6]
    cluster = rados.Rados(conffile=conf, rados_id=user, conf={"keyring": keyring})
    cluster.connect()
    try:
        with cluster.open_ioctx(pool) as io:
            image = None
            for op in sys.argv[6:]:
                kind, *args = op.split(":")
                if kind == "create":
                    rbd.RBD().create(io, name, number(args[0]))
                    continue
                if image is None:
                    image = rbd.Image(io, name)
                if kind == "fill":
                    offset, length, byte = number(args[0]), number(args[1]), number(args[2])
                    step = 4 << 20
                    for at in range(offset, offset + length, step):
                        image.write(bytes([byte]) * min(step, offset + length - at), at)
                elif kind == "random":
                    offset, length, seed = number(args[0]), number(args[1]), int(args[2])
                    generator = random.Random(seed)
                    step = 4 << 20
                    for at in range(offset, offset + length, step):
                        image.write(generator.randbytes(min(step, offset + length - at)), at)
                elif kind == "discard":
                    image.discard(number(args[0]), number(args[1]))
                elif kind == "snap":
                    image.create_snap(args[0])
                else:
                    sys.exit(f"unknown operation {op}")
            if image is not None:
                image.flush()
                image.close()
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
