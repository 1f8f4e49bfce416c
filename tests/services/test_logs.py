import io
import logging

from services.logs import SecretFilter, mask_text, setup_logging


def test_mask_text_patterns():
    text = "GET https://huggingface.co/x?token=abc123&y=1 Authorization: Bearer sk-verysecret hf_abcdefghijklmn"
    masked = mask_text(text)
    assert "abc123" not in masked and "sk-verysecret" not in masked and "hf_abcdefghijklmn" not in masked
    assert "y=1" in masked


def test_mask_known_values():
    assert mask_text("password is hunter2!", ["hunter2!"]) == "password is ***"


def test_filter_masks_records():
    stream = io.StringIO()
    setup_logging("info", ["s3cr3t-value"], stream=stream)
    try:
        logging.getLogger("t").info("token %s in url %s", "s3cr3t-value", "http://x/?api_key=zzz")
    finally:
        setup_logging("warning", [], stream=io.StringIO())
    out = stream.getvalue()
    assert "s3cr3t-value" not in out and "zzz" not in out and "***" in out


def test_filter_keeps_plain_records():
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    assert SecretFilter([]).filter(record)
    assert record.getMessage() == "hello world"
