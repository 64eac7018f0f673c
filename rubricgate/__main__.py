from rubricgate.interfaces.cli import main

main()
