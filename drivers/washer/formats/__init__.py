"""Receipt formats: each `parse(text, tz) -> WasherCycle`, raising ReceiptError with a reason."""
