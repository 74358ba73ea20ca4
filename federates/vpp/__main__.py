from federates.common.helics_shell import run_main
from federates.vpp.federate import main

run_main(main, "Community VPP federate (Layer I platform, Layer II bidding, Layer III trading)")
