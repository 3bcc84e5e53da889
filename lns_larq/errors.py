"""One-line error messages.

```python
try:
    open("/nonexistent")
except OSError as e:
    print(f"cannot read: {lns_larq.errors.first_line(e)}")
```
"""

__all__ = ["first_line"]


def first_line(error: BaseException) -> str:
    """The first line of `error`'s message, or its type's name if the message is empty."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
