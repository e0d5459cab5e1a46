import array

import numpy as np
import pytest

from waystation.device import ArgumentError, Tensor


def test_nested_list_infers_shape_and_round_trips():
    t = Tensor("float32", [[1, 2, 3], [4, 5, 6]])
    assert t.shape == (2, 3)
    assert t.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert t.nbytes == 24


def test_buffer_is_wrapped_without_copy():
    buf = array.array("f", [1.0, 2.0, 3.0, 4.0])
    t = Tensor("float32", buf, (2, 2))
    buf[0] = 9.0
    assert t.tolist()[0][0] == 9.0


def test_bytes_are_reinterpreted_as_dtype():
    t = Tensor("int64", array.array("q", [7, -8]).tobytes())
    assert t.shape == (2,) and t.tolist() == [7, -8]


def test_numpy_interop_both_ways():
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = Tensor("float32", arr)
    assert t.shape == (3, 4)
    np.testing.assert_array_equal(np.asarray(t), arr)
    assert np.shares_memory(t.numpy(), arr)


def test_bool_and_int64_lists():
    assert Tensor("bool", [True, False, True]).tolist() == [True, False, True]
    assert Tensor("int64", [2**40, -1]).tolist() == [2**40, -1]


def test_reshape_shares_memory():
    t = Tensor("int32", list(range(6)))
    assert t.reshape((3, 2)).tolist() == [[0, 1], [2, 3], [4, 5]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("complex64", [1]), "unsupported dtype"),
        (("float32", [1, 2, 3], (2, 2)), "needs 4 elements"),
        (("float32", [[1, 2], [3]]), "ragged"),
        (("int32", ["x"]), "cannot store"),
        (("float32", np.zeros(3, dtype=np.float64)), "not float32"),
        (("float32", object()), "list or a buffer"),
    ],
)
def test_bad_input_names_the_problem(args, message):
    with pytest.raises(ArgumentError, match=message):
        Tensor(*args)
