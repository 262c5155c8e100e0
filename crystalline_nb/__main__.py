"`python -m crystalline_nb ...`: the `cllm` command line (see `crystalline_nb.cli`); written by hand, not exported."
import sys
from crystalline_nb.cli import main

if __name__ == "__main__":
    sys.exit(main())
