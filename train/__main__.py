from fer_train.cli import main

main()
