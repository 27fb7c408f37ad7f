from fraudrules.cli import main

main()
