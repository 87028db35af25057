"""report.recommend: which artifact a deployer should ship (issue 12, defect 8)."""

from epsd_tf.export import report


def _artifact(name, size, passed=True, xnnpack_error=None):
    entry = {"path": f"/x/model_{name}.tflite", "bytes": size, "gzip_bytes": size,
             "parity": {"passed": passed}}
    if xnnpack_error:
        entry["xnnpack_error"] = xnnpack_error
    return entry


def _report(**sizes):
    artifacts = {"keras": _artifact("keras", 10)}  # smallest, but not an edge file
    for name, spec in sizes.items():
        spec = spec if isinstance(spec, tuple) else (spec,)
        artifacts[name] = _artifact(name, *spec)
    return {"artifacts": artifacts}


def test_a_smaller_sparse_file_that_fails_the_default_delegate_is_not_shipped():
    ship = report.recommend(_report(float32=1000, int8=300, int8_sparse=(120, True, "FC")))
    assert ship["artifact"] == "int8" and ship["bytes"] == 300
    assert "XNNPACK" in ship["rejected"]["int8_sparse"]
    assert ship["rejected"]["float32"].startswith("larger")


def test_a_larger_sparse_file_is_not_shipped():
    ship = report.recommend(_report(float32=1000, int8=262, int8_sparse=300))
    assert ship["artifact"] == "int8"
    assert ship["rejected"]["int8_sparse"] == "larger (300 bytes vs 262)"


def test_the_smallest_loadable_file_wins_sparse_or_not():
    ship = report.recommend(_report(float32=1000, float32_sparse=200, int8=300,
                                    int8_sparse=(100, True, "FC")))
    assert ship["artifact"] == "float32_sparse"
    ship = report.recommend(_report(int8=300, int8_sparse=250))
    assert ship["artifact"] == "int8_sparse"


def test_parity_failures_are_never_shipped():
    ship = report.recommend(_report(int8=(100, False), float16=(500, False)))
    assert ship["artifact"] is None and ship["path"] is None
    assert ship["rejected"] == {"int8": "fails the parity check",
                                "float16": "fails the parity check"}


def test_without_tflite_files_the_keras_file_is_shipped():
    assert report.recommend(_report())["artifact"] == "keras"
