from prediff.cli.app import main

main()
