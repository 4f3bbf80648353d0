from anklume.cli import main

main()
