"""Bounds on a pickle before it is unpickled: nesting depth, memo size and the work it asks for.

The restricted unpicklers of tfhash (CIFAR-10 batches, legacy torch files) refuse
every name outside their format, so nothing a file names can run. What a pickle
can still do with the plain containers it is allowed is cost memory and time:
a few megabytes of GET opcodes can copy one big list into thousands of
containers (gigabytes), and a tuple nested a million deep overflows the C stack
when it is freed (Python crashes). `check_pickle` walks the opcodes first
(`pickletools.genops`, iterative) and keeps, for each object on the simulated
stack, its nesting depth and its size in elements (one record shared by the
stack and the memo, so a container filled after it was memoized counts full
when it is fetched); it refuses the pickle when the depth, the memo or the
total size of what it builds passes the limits.
"""

import io
import pickletools

MAX_DEPTH = 100  # containers inside containers; a state dict or a batch needs fewer than 10
MAX_MEMO = 1_000_000
_MARK = object()


class _Refused(ValueError):
    """A bound passed (not a damaged pickle)."""


# opcodes that put what they pop into the object below it and leave that object on the stack
_MUTATORS = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})


def check_pickle(data, offset=0, max_depth=MAX_DEPTH, max_memo=MAX_MEMO, max_work=None):
    """Walks the pickle that starts at `offset` of bytes `data`; returns the offset after its STOP.

    Args:
        max_work: most elements all its containers may hold together (every object counts 1,
            a container 1 + what it holds, each time it is built): default 16 per byte of the
            pickle plus 100,000.

    Raises:
        ValueError: the pickle nests deeper than `max_depth`, memoizes more than `max_memo`
            objects, or builds more than `max_work` elements; or it is not a pickle.
    """
    if max_work is None:
        max_work = 16 * (len(data) - offset) + 100_000
    stream = io.BytesIO(data)
    stream.seek(offset)
    stack, memo, work, end = [], {}, 0, None
    try:
        for op, arg, _ in pickletools.genops(stream):
            name = op.name
            if name == "STOP":
                end = stream.tell()
                break
            if name == "MARK":
                stack.append(_MARK)
                continue
            if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                if not stack or stack[-1] is _MARK:
                    raise _Refused("a memo entry of nothing")
                memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
                if len(memo) > max_memo:
                    raise _Refused(f"more than {max_memo:,} memoized objects")
                continue
            if name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise _Refused(f"memo key {arg!r} read before it is written")
                stack.append(memo[arg])
                continue
            popped = _pop(stack, op)
            if name in _MUTATORS:  # the container (popped last) takes the others in, in place
                container, others = popped[-1], popped[:-1]
                container[0] = max(container[0], 1 + max((d for d, _ in others), default=0))
                added = sum(s for _, s in others)
                container[1] += added  # memo entries share the record: a later GET sees the full size
                work += added
                pushed = [container]
            else:
                depth = 1 + max((d for d, _ in popped), default=0)
                size = 1 + sum(s for _, s in popped)
                pushed = [[depth, size] for _ in op.stack_after]
                work += size * len(pushed)
            if pushed and pushed[0][0] > max_depth:
                raise _Refused(f"objects nested more than {max_depth} deep")
            stack.extend(pushed)
            if work > max_work:
                raise _Refused(
                    f"it builds more than {max_work:,} elements (containers copied many times over)"
                )
    except _Refused as error:
        raise ValueError(f"a pickle refused before unpickling: {error}") from None
    except ValueError as error:  # pickletools on bytes that are not a pickle
        raise ValueError(f"a damaged pickle ({error})") from None
    if end is None:
        raise ValueError("a damaged pickle: it has no STOP (truncated)")
    return end


def _pop(stack, op):
    """Pops what `op` consumes: everything down to the last mark (and the mark) for a stack slice,
    then the fixed arguments before it."""
    before = op.stack_before
    popped = []
    if pickletools.markobject in before:
        while stack and stack[-1] is not _MARK:
            popped.append(stack.pop())
        if not stack:
            raise _Refused(f"{op.name} without a MARK")
        stack.pop()
        fixed = before.index(pickletools.markobject)
    else:
        fixed = len(before)
    for _ in range(fixed):
        if not stack or stack[-1] is _MARK:
            raise _Refused(f"{op.name} on a stack too short")
        popped.append(stack.pop())
    return popped
