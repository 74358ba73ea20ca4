from federates.common.helics_shell import run_main
from federates.vpp_market.federate import main

run_main(main, "Inter-VPP market federate (Layer III)")
