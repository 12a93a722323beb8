from tfhash.cli import main

main()
