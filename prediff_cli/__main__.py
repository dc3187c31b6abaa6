from prediff_cli.cli.app import main

main()
