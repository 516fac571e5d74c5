"""Node epoch: which flash generation of a node a seq belongs to; one definition for firmware and gateway.

A node's seqs restart at 1 when its flash log starts fresh (flash erased, board replaced under the same
id). A fresh log draws a random epoch in 1..MAX (30 bits: a small int on a 32-bit board, no long ints)
and keeps it in its state slots for as long as the log lives. A log written before epochs existed keeps
epoch 0 ("legacy") until it is erased, so upgrading the firmware never looks like a reset.

Wire (backward compatible: a legacy node's messages are unchanged):
  up / alert  [first_seq, pack, tag or null, epoch] when epoch != 0; the tag (shared/auth.py) then also
              binds the epoch, so nobody can replay an old pack as if it came from a new epoch.
  ack         {"up": n, "alert": m, "e": epoch} ("e" absent for epoch 0): n and m are seqs of that
              epoch. A node applies an ack only if its "e" equals its own epoch, so a gateway's cursor
              from before a reset never deletes readings the gateway has not stored.
  state       "epoch": the node's epoch (the gateway applies state "oldest" only within that epoch).
"""

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

MAX = const(0x3FFFFFFF)
ACK_KEY = "e"


def from_bytes(b):
    """A fresh epoch in 1..MAX from 4 random bytes."""
    e = ((b[0] << 22) | (b[1] << 14) | (b[2] << 6) | (b[3] >> 2)) & MAX
    return e or 1


def fresh():
    """A fresh random epoch (os.urandom where the port has it)."""
    try:
        import os
        return from_bytes(os.urandom(4))
    except (ImportError, AttributeError, OSError):
        import random
        return from_bytes(bytes(random.getrandbits(8) for _ in range(4)))


def valid(e):
    """True if e is an epoch (0 = legacy, or 1..MAX)."""
    return isinstance(e, int) and not isinstance(e, bool) and 0 <= e <= MAX


def ack_map(cursors, epoch):
    """The ack map for cursors {lane: seq} of epoch (adds "e" unless epoch is 0)."""
    m = dict(cursors)
    if epoch:
        m[ACK_KEY] = epoch
    return m


def ack_epoch(m):
    """The epoch an ack map is for (0 when it has no "e"); ValueError if "e" is not an epoch."""
    e = m.get(ACK_KEY, 0)
    if not valid(e):
        raise ValueError("epoch: ack has a bad epoch")
    return e
