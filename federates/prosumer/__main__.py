from federates.common.helics_shell import run_main
from federates.common.imports import skip_pyomo_scipy_finalize
from federates.prosumer.federate import main

# Pyomo is imported now, scipy not yet: the HEMS's standard-form compiler then imports scipy.sparse without the
# scipy.stats & co. Pyomo's import hook would add (~0.5 CPU-s; federates.common.imports)
skip_pyomo_scipy_finalize()
run_main(main, "Prosumer microgrid controller federate")
