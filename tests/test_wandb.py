"""v12：离线模式下记录超参数、每次评估的指标和样本表；wandb 出错时训练照常完成。"""
import json
import struct

from wandb.proto import wandb_internal_pb2

from conftest import run_ok, samples

RUN = ["--preset=cpu", "--max_iters=20", "--eval_interval=10", "--eval_iters=2", "--n_layer=1", "--n_embd=32",
       "--n_head=4", "--block_size=16", "--max_new_tokens=8"]


def read_records(path):
    """读离线运行的 .wandb 文件：7 字节文件头，之后是 32 KiB 一块的 LevelDB 日志，每条记录是一个 protobuf。"""
    data, pos, pending, records = path.read_bytes(), 7, b"", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # 块尾放不下记录头的几个字节是填充
            pos += 32768 - pos % 32768
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL 或 LAST：一条记录拼完整了
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def items(entries):
    return {e.key or "/".join(e.nested_key): json.loads(e.value_json) for e in entries}


def test_offline_run_logs_config_metrics_and_samples(tiny_corpus, tmp_path):
    result = run_ok("babygpt_v12_wandb.py", f"--data_path={tiny_corpus}", f"--checkpoint={tmp_path / 'c.pt'}",
                    "--wandb_mode=offline", *RUN, cwd=tmp_path)
    run_dirs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    assert f"wandb sync {run_dirs[0]}" in result.stdout
    records = read_records(next(run_dirs[0].glob("run-*.wandb")))
    history = [items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    assert [h["_step"] for h in history] == [10, 20]
    assert all({"train_loss", "val_loss", "tokens_per_sec", "elapsed_seconds"} <= set(h) for h in history)
    config = {}
    for r in records:
        kind = r.WhichOneof("record_type")
        if kind in ("run", "config"):
            config.update(items((r.run.config if kind == "run" else r.config).update))
    assert config["max_iters"] == 20 and config["n_embd"] == 32 and config["wandb_mode"] == "offline"
    table = json.loads(next(run_dirs[0].glob("files/media/table/samples_*.table.json")).read_text(encoding="utf-8"))
    assert table["columns"] == ["prompt", "sample"]
    assert [row[0] for row in table["data"]] == ["春江", "往事"]
    assert table["data"][0][1] == samples(result.stdout)["春江"].rstrip("\n")


def test_wandb_failure_never_stops_training(tiny_corpus, tmp_path):
    # online 但没有 API key：wandb.init 会失败，训练与采样必须照常完成
    env = {"WANDB_API_KEY": "", "HOME": str(tmp_path), "NETRC": str(tmp_path / "none")}
    result = run_ok("babygpt_v12_wandb.py", f"--data_path={tiny_corpus}", f"--checkpoint={tmp_path / 'c.pt'}",
                    "--wandb_mode=online", *RUN, cwd=tmp_path, env=env)
    assert "警告：wandb 初始化失败" in result.stderr
    assert samples(result.stdout)["春江"].startswith("春江")


def test_training_runs_without_wandb_installed(tiny_corpus, tmp_path):
    # 在 PYTHONPATH 最前面放一个一导入就报 ImportError 的假 wandb，模拟没装 wandb 的机器
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "wandb.py").write_text('raise ImportError("假装没有安装 wandb")\n', encoding="utf-8")
    result = run_ok("babygpt_v12_wandb.py", f"--data_path={tiny_corpus}", f"--checkpoint={tmp_path / 'c.pt'}",
                    *RUN, cwd=tmp_path, env={"PYTHONPATH": str(fake)})
    assert "没有安装 wandb" in result.stderr
    assert not (tmp_path / "wandb").exists()
    assert samples(result.stdout)["往事"].startswith("往事")
