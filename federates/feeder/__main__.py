from federates.common.helics_shell import run_main
from federates.feeder.federate import main

run_main(main, "Feeder physics federate (OpenDSS)")
