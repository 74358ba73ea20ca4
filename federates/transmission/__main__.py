from federates.common.helics_shell import run_main
from federates.transmission.federate import main

run_main(main, "transmission power-flow federate (T&D co-simulation)")
