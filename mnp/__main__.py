from mnp.cli.main import main

main()
