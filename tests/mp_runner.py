# Runs one test function of a test module on the MicroPython unix port.
# usage: micropython tests/mp_runner.py path/to/test_x.py [test_name ...]
import sys

# The runner's own folder (tests/) would shadow the repo's shared/ with tests/shared: search it
# last, so the tests' helpers in it (mp_waits) still import.
if sys.path and sys.path[0].endswith("tests"):
    sys.path.append(sys.path.pop(0))

_MARK = "FOGLINE-RESULT"


def _run(path, names):
    slash = path.rfind("/")
    sys.path.insert(0, path[:slash] if slash > 0 else ".")
    modname = path[slash + 1:]
    if modname.endswith(".py"):
        modname = modname[:-3]
    mod = __import__(modname)
    if not names:
        names = [n for n in dir(mod) if n.startswith("test_")]
        names.sort()
    failed = 0
    for name in names:
        fn = getattr(mod, name)
        try:
            fn()
            print(_MARK, name, "ok")
        except Exception as e:  # report every failure, keep going
            failed += 1
            print(_MARK, name, "FAIL")
            sys.print_exception(e)
    return failed


sys.exit(1 if _run(sys.argv[1], sys.argv[2:]) else 0)
