

def test_legacy_rows_recording_the_tp_x_ep_product_run_on_their_real_gpus():
    """Legacy benchmark-database rows record tp = moe_tp x moe_ep (tp 64 on one 8-GPU node): the deployment ran on
    moe_tp GPUs; attention data parallel likewise; rows that add up stay as recorded."""
    from perfsim.serving.validation import deflated_layout
    assert deflated_layout(64, 1, 8, 8) == (8, 1)
    assert deflated_layout(16, 1, 4, 4) == (4, 1)
    assert deflated_layout(1, 64, 8, 8) == (1, 8)
    assert deflated_layout(8, 1, 1, 8) == (8, 1)       # tp 8, experts over ep 8: as recorded
    assert deflated_layout(4, 4, 1, 16) == (4, 4)      # vLLM's dp x tp expert group: as recorded
