"""bench_train.py：基准脚本本身能跑完、写出表格，坏参数给一行中文错误。这里只查行为，不查速度。"""
from conftest import assert_clean_error, run_ok, run_script


def test_bench_writes_one_row_per_step_with_the_ratio_to_v11(tmp_path):
    out = tmp_path / "bench.md"
    run_ok("bench_train.py", "--only=v11,v13", "--steps=1", "--warmup=1", "--repeats=1", f"--output={out}", timeout=240)
    text = out.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| v1")]
    assert [row.split("|")[1].strip() for row in rows] == ["v11", "v13"], text
    assert "1.00×" in rows[0] and "失败" not in text
    assert "硬件：" in text and "矩阵乘法峰值" in text


def test_unknown_row_names_the_valid_ones():
    result = run_script("bench_train.py", "--only=v99")
    assert_clean_error(result, code=2)
    assert "v99" in result.stderr and "v16_torchrun" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
