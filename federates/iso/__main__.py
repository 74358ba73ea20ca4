from federates.common.helics_shell import run_main
from federates.iso.federate import main

run_main(main, "ISO ancillary-services market federate")
