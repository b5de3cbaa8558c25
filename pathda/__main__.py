from pathda.cli import main

main()
