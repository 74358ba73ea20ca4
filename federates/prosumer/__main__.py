from federates.common.helics_shell import run_main
from federates.prosumer.federate import main

run_main(main, "Prosumer microgrid controller federate")
