from hpcq.cli import main

main()
