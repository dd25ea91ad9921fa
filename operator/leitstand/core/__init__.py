"""The scheduling core: a pure, deterministic function from a snapshot to decisions.

Purely computational: no I/O, no clock, no randomness, no asyncio. Ties are
broken by stable keys and outputs are sorted, so the same snapshot gives the
same decisions whatever the order of its inputs. The live operator, the
simulator and the benchmarks all call the same code.
"""
