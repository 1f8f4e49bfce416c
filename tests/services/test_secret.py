from services.secret import Secret


def test_secret_masks_everywhere():
    s = Secret("hf_supersecretvalue")
    assert "supersecret" not in repr(s) and "supersecret" not in str(s) and "supersecret" not in f"{s}"
    assert "supersecret" not in f"{s!r} {[s]} {({'k': s})}"
    assert s.reveal() == "hf_supersecretvalue"
    assert bool(s) and not Secret("")
    assert s == Secret("hf_supersecretvalue") and s != Secret("x")
