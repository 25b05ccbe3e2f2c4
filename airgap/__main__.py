from airgap.cli import main

main()
