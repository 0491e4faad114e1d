"""``python -m offrl --config=td3bc --workdir=...``: the launcher (see offrl/launch.py)."""
from offrl.launch import run

if __name__ == "__main__":
    run()
