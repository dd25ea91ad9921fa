"""Kubernetes resource quantities (``500m``, ``32``, ``256Gi``, ``1.5e3``) as integers."""

from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
            "P": Decimal("1e15"), "E": Decimal("1e18")}  # fmt: skip


def parse(quantity: str | int | float) -> Decimal:
    """The value of ``quantity`` in base units; ValueError when it is not a quantity."""
    text = str(quantity).strip()
    for suffix, factor in _BINARY.items():
        if text.endswith(suffix):
            return _number(text[: -len(suffix)], quantity) * factor
    suffix = text[-1:] if text[-1:] in _DECIMAL and not text[-1:].isdigit() else ""
    return _number(text[: len(text) - len(suffix)], quantity) * _DECIMAL[suffix]


def _number(text: str, original: object) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a Kubernetes quantity: {original!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a Kubernetes quantity: {original!r}")
    return value


def millis(quantity: str | int | float | None) -> int:
    """CPU in millicores (rounded up), 0 for None."""
    if quantity is None:
        return 0
    return int((parse(quantity) * 1000).to_integral_value(rounding="ROUND_CEILING"))


def units(quantity: str | int | float | None) -> int:
    """A count or bytes (rounded up), 0 for None."""
    if quantity is None:
        return 0
    return int(parse(quantity).to_integral_value(rounding="ROUND_CEILING"))
