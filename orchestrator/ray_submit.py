"""Entry script for `ray submit`: run `xlt` from the project folder and venv on the head node.

`ray submit CLUSTER.yaml SCRIPT ARGS...` copies SCRIPT alone to the head node's home folder and runs it
there with whatever `python` is first on the PATH. Neither the project's packages (installed in its venv)
nor relative paths such as `configs/paper.yaml` resolve from there, so this script uses the standard
library only: it changes into the project folder (`XLT_HOME`, default `~/xlt`, where
`configs/cluster.yaml` mounts the repository and builds `.venv`) and replaces itself with that venv's `xlt`:

    ray submit --tmux configs/cluster.yaml orchestrator/ray_submit.py run configs/paper.yaml \\
        output_dir=/shared/xlt/runs tracking_uri=http://10.0.0.1:5000
"""
from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> None:
    home = os.path.expanduser(os.environ.get("XLT_HOME", "~/xlt"))
    xlt = os.path.join(home, ".venv", "bin", "xlt")
    if not os.access(xlt, os.X_OK):
        sys.exit(f"ray_submit: no executable {xlt}. Set XLT_HOME to the project folder on the head node, or "
                 "install the project there first (configs/cluster.yaml's setup_commands build its .venv).")
    os.chdir(home)
    os.execv(xlt, [xlt, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
