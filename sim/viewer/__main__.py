from sim.viewer.cli import main

main()
