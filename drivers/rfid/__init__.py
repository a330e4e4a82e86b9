"""RFID readers: sans-I/O frame parsers per reader family, tag normalisation, the reader driver."""
