"""`make chaos`: a sale with payments under a seeded fault schedule, then a checker of the
invariants money and stock must keep (see docs/chaos.md)."""
