from loadtests.chaos.run import main

main()
