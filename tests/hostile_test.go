package tests

import "errors"

func hostileSender() error { return errors.New("todo") }
