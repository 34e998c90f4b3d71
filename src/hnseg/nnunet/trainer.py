"""`nnUNetTrainerHnseg`: nnU-Net's default trainer with the training length and checkpoint interval from the config.

Everything that shapes the model is nnU-Net's default (network, loss, SGD with poly schedule, augmentation, deep
supervision); only `num_epochs`, `num_iterations_per_epoch`, `num_val_iterations_per_epoch` and how often
`checkpoint_latest.pth` is written (`save_every`, config key `nnunet.checkpoint_every`) are set, by
:meth:`nnUNetTrainerHnseg.configure`, before training starts. The paper's run is 1000 x 250 (+ 50 validation)
iterations; the demo config is a few iterations.

Checkpoints (nnU-Net's `on_epoch_end`): after epoch e (counted from 0), `checkpoint_latest.pth` is written when
(e + 1) is a multiple of `save_every`, except after the last epoch, where `checkpoint_final.pth` is written and the
latest one deleted. A run killed in between resumes from the latest checkpoint (`hnseg.nnunet.run.train`), redoing
the epochs after it.

How nnU-Net finds it: hnseg never goes through nnU-Net's name lookup for training or prediction.
`hnseg.nnunet.run` instantiates this class itself, and rebuilds the network for prediction from the checkpoint with
this class's (inherited) `build_network_architecture`. nnU-Net's own command-line tools find it by name when the
environment has `nnUNet_extTrainer` pointing at this folder (nnunetv2 >= 2.8; `hnseg.nnunet.run.nnunet_environment`
sets it), e.g. `nnUNetv2_predict ... -tr nnUNetTrainerHnseg -f 0`. Nothing is copied into site-packages.

The constructor keeps nnU-Net's signature on purpose: nnU-Net records the constructor's arguments (`init_args`
in every checkpoint) by reading them back from its own frame, and would fail on extra ones.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerHnseg(nnUNetTrainer):  # nnU-Net names trainers nnUNetTrainer*
    """nnU-Net's default trainer; training length set by :meth:`configure` (default: nnU-Net's 1000 x 250 / 50)."""

    def configure(
        self,
        epochs: int,
        iterations_per_epoch: int,
        val_iterations_per_epoch: int,
        checkpoint_every: int | None = None,
    ) -> nnUNetTrainerHnseg:
        """Set the training length and, unless None (nnU-Net's 50), the epochs between checkpoint_latest.pth saves;
        call before training starts (the LR schedule is built from `epochs`)."""
        for name, value in (
            ("epochs", epochs),
            ("iterations_per_epoch", iterations_per_epoch),
            ("val_iterations_per_epoch", val_iterations_per_epoch),
            ("checkpoint_every", 1 if checkpoint_every is None else checkpoint_every),
        ):
            if int(value) < 1:
                raise ValueError(f"nnU-Net {name} must be at least 1, got {value}")
        if self.was_initialized:
            raise RuntimeError("configure() must be called before the trainer is initialised")
        self.num_epochs = int(epochs)
        self.num_iterations_per_epoch = int(iterations_per_epoch)
        self.num_val_iterations_per_epoch = int(val_iterations_per_epoch)
        if checkpoint_every is not None:
            self.save_every = int(checkpoint_every)
        self.print_to_log_file(
            f"hnseg: {self.num_epochs} epochs x {self.num_iterations_per_epoch} iterations "
            f"(+ {self.num_val_iterations_per_epoch} validation), checkpoint_latest every {self.save_every} epochs",
            also_print_to_console=False,
        )
        return self
