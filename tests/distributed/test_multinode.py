"""Two DeepSpeed launchers as two "nodes" on loopback (--no_ssh), training digits, checkpointing, resuming."""

import subprocess
import sys

import pytest

from tests.helpers import DIGITS, REPO, free_port, kill_tree, run_cli


def launch_two_nodes(tmp_path, output_dir, extra_opts, resume=False):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node0 slots=1\nnode1 slots=1\n")
    port = free_port()
    commands = [
        [sys.executable, "-m", "deepspeed.launcher.runner", "--hostfile", str(hostfile), "--no_ssh",
         "--num_nodes", "2", "--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port),
         str(DIGITS / "train.py"), "--config-file", str(DIGITS / "configs" / "digits.py"),
         *(["--resume"] if resume else []),
         "--opts", "output_dir", str(output_dir), "solver.max_iter", "40", "solver.checkpoint_period", "20",
         "solver.eval_period", "40", "solver.generator.lr_scheduler.params.max_iter", "100", *extra_opts]
        for rank in (0, 1)
    ]
    # node 1 in the background, node 0 in the foreground; both bounded by run_cli's timeout and group kill
    node1 = subprocess.Popen(commands[1], cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    try:
        node0 = run_cli(commands[0], timeout=240)
        out1, _ = node1.communicate(timeout=60)
    finally:
        if node1.poll() is None:
            kill_tree(node1.pid)
            node1.communicate()
    return node0, node1.returncode, out1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_node_launch_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "run"
    node0, code1, out1 = launch_two_nodes(tmp_path, out, ["solver.stop_at_iter", "20"])
    assert node0.returncode == 0 and code1 == 0, node0.stdout[-3000:] + out1[-3000:]
    assert (out / "checkpoints" / "iter_0000020" / "COMPLETE.json").exists()
    log = (out / "digits.log").read_text()
    assert "world size 2 (deepspeed)" in log and "global batch 64" in log

    node0, code1, out1 = launch_two_nodes(tmp_path, out, [], resume=True)
    assert node0.returncode == 0 and code1 == 0, node0.stdout[-3000:] + out1[-3000:]
    log = (out / "digits.log").read_text()
    assert f"resumed from {out / 'checkpoints' / 'iter_0000020'} at step 20" in log
    assert "step 40/40" in log and "final validation accuracy" in log
    assert (out / "checkpoints" / "iter_0000040" / "COMPLETE.json").exists()
