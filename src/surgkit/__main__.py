"""``python -m surgkit``: the same command line, for launchers that start modules.

``accelerate launch -m surgkit skill train ...`` and ``torchrun --nproc_per_node 2 -m surgkit ...``
run any surgkit trainer on several processes.
"""

from surgkit.cli import main

if __name__ == "__main__":
    main()
