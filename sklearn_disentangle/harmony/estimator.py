"""``HarmonyEstimator``: semantic content disentangled from rotation, shift, scale or contrast."""

import math
import os
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from skorch.callbacks import Checkpoint
from sklearn.cluster import KMeans
from sklearn.utils.validation import check_is_fitted

from .._validation import Interval, Options
from ..base import LatentTransformer
from ..cryoem.rotations import euler_to_matrix, matrix_to_euler
from ..io.particles import ParticleStack
from ..training import LinearWarmup, ParamSchedule, to_batch_tensor
from .model import KINDS, ROTATION_HEADS, HarmonyModule, compose_poses, invert_pose
from .warps import rotation_2d

__all__ = ["HarmonyEstimator", "auto_gamma"]

_MLP_WIDTHS = (256, 256, 128)  # 2-D encoder (upstream: 512, 512, 512, 512, 128); the decoder mirrors it
_CONV3D_WIDTHS = (32, 64, 128, 512)      # upstream 3-D encoder (3 stride-2 convolutions, then 512)
AUTO_CONTENT_WARMUP = 6  # epochs of plain-autoencoder training before the variational objective (pose search)
FRAME_ANCHORS = 8  # content clusters whose canonical frames common_frame aligns
_CONV2D_WIDTHS = (32, 32, 64, 64, 128, 512)  # upstream colour encoder
_MATRIX_COLUMNS = tuple(f"r{i}{j}" for i in (1, 2, 3) for j in (1, 2, 3))


def auto_gamma(n_samples, batch_size):
    """Harmony's automatic ``gamma``: ``ceil(n_samples / (1000 * batch_size))``.

    The rule of the reference code's ``estimate_optimal_gamma`` (M training samples, batch
    size B): 1 for any data set of at most ``1000 * B`` samples, one more for every further
    ``1000 * B``.

    Parameters
    ----------
    n_samples : int
        Number of training samples.
    batch_size : int

    Returns
    -------
    gamma : int

    Examples
    --------
    >>> from sklearn_disentangle.harmony import auto_gamma
    >>> auto_gamma(5000, 100), auto_gamma(100_001, 100), auto_gamma(250_000, 50)
    (1, 2, 5)
    """
    return int(math.ceil(int(n_samples) / (1000.0 * int(batch_size))))


def _default_conv_widths(base, spatial):
    """The reference's conv widths, with as many stride-2 convolutions as leave a side of >= 2."""
    fits = max(1, int(math.floor(math.log2(max(min(spatial), 2)))) - 1)
    n_conv = min(len(base) - 1, fits)
    return tuple(base[:n_conv]) + (base[-1],)


def _pair(value, name):
    if not (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, Real) and not isinstance(v, bool) and np.isfinite(v) for v in value)):
        raise ValueError(f"{name} must be a (low, high) pair of finite numbers, got {value!r}.")
    lo, hi = float(value[0]), float(value[1])
    if not 0 < lo <= hi:
        raise ValueError(f"{name} must satisfy 0 < low <= high, got {value!r}.")
    return lo, hi


class HarmonyEstimator(LatentTransformer):
    """Harmony: semantic content disentangled from parameterised transformations (Uddin et al., CVPR 2022).

    A two-branch, shared-weight autoencoder with explicit pose heads. For each image the
    encoder predicts a pose (in-plane rotation and shift; plus scale; 3-D rotation and
    shift; or an intensity gain) and a Gaussian posterior over a ``z_dim``-dimensional
    *content* code (by default read off the image brought to the canonical frame by its
    pose, see ``content_from``). The pose warps the input into a canonical frame and the
    decoder reconstructs that canonical image from the content code alone. Each training batch is
    also fed as a randomly transformed copy; the loss asks both canonicalised copies to
    agree with each other and with their reconstructions, and both content posteriors to
    agree. ``transform`` returns the content mean, which does not follow the pose, so
    conformations of particles seen in arbitrary in-plane orientations (or objects under
    varying lighting) cluster by content; :meth:`transform_params` returns the poses.

    Parameters
    ----------
    kind : {"rigid2d", "affine2d", "rigid3d", "contrast"}, default="rigid2d"
        Transformation family: in-plane rotation + shift (cryo-EM particles);
        rotation + shift + isotropic scale; 3-D rotation (see ``rotation_head``) + shift
        (subtomograms, volumes); a global intensity gain (images under varying lighting,
        grayscale or RGB).
    z_dim : int, default=1
        Dimension of the content code (the reference's default).
    gamma : "auto" or float, default="auto"
        Weight of the image terms against the KL terms. ``"auto"`` applies the reference's
        rule, ``ceil(n_train / (1000 * batch_size))`` (:func:`auto_gamma`); the value used
        is ``gamma_``.
    prior_kl_weight : float, default=1.0
        Weight of the KL of the content posteriors to N(0, I). The reference has none (set
        0 to reproduce it); 1.0 anchors the content scale so that decoding codes drawn from
        N(0, I), as traversals do, is meaningful.
    prior_free_bits : float, default=0.0
        "Free bits" (Kingma et al., 2016) of the prior KL: per content dimension, a batch-mean
        KL to N(0, I) below this many nats costs nothing, so the prior does not pull a weakly
        used code to collapse. 0: off (an addition; the reference has no prior term). On the
        one simulated 3-D data set where the code collapsed (a third of the poses wrong), 1.0
        raised the ARI from 0.085 to 0.200 only (the code was used, not for the
        conformation), hence off by default.
    cross_weight_in_gamma : bool, default=True
        Whether ``gamma`` also multiplies the cross term (reference 2-D/3-D: True; the
        reference colour variant: False).
    normalize : {"auto", "per_sample"} or None, default="auto"
        ``"per_sample"`` z-scores each sample before it is encoded and warped (the
        reference's recipe for particles and subtomograms); None leaves values as they are.
        ``"auto"``: None for ``kind="contrast"`` (a z-score would remove the gain), else
        ``"per_sample"``. Reconstructions and canonical images are in these units.
    decoder_output : {"auto", "linear", "tanh", "sigmoid"}, default="auto"
        Output non-linearity of the decoder. ``"auto"``: sigmoid when the model sees values
        in [0, 1] (``normalize=None`` on such data), else linear.
    max_shift : "auto" or float, default="auto"
        Bound of predicted shifts, ``max_shift * tanh(.)`` pixels per axis; ``"auto"``: a
        quarter of the smallest image side.
    max_scale : float, default=2.0
        Predicted scales lie in ``[1 / max_scale, max_scale]`` (``affine2d``).
    gain_range : (float, float), default=(0.5, 2.0)
        Range of predicted gains (``contrast``).
    augment_rotation : float, default=90.0
        Augmentation angles in degrees, ``U(-a, a)``: in-plane in 2-D, each axis-angle
        component in 3-D (the reference's +-pi/2).
    augment_shift : "auto" or float, default="auto"
        Augmentation shifts ``U(-s, s)`` pixels per axis; ``"auto"``: 3 in 2-D, 4 in 3-D (the
        reference's).
    augment_scale : (float, float), default=(1.0, 1.5)
        Augmentation scale range (``affine2d``).
    augment_gain : (float, float), default=(1.0, 1.5)
        Augmentation gain range (``contrast``).
    resolve_half_turns : bool, default=True
        Rotating kinds: canonicalise each sample with its predicted rotation or that rotation
        composed with a half-turn of the canonical frame (2-D: 180 degrees; ``rigid3d``: 180
        degrees about each canonical axis), whichever is closest to its reconstruction, in
        training and in :meth:`transform_params` (see Notes). False reproduces the reference.
    contrast_frame : {"observed", "canonical"}, default="observed"
        ``contrast``: where the image terms are measured (see Notes). ``"canonical"``
        reproduces the reference.
    rotation_head : {"6d", "axis_angle"}, default="6d"
        ``rigid3d``: how the encoder parameterises the predicted rotation: 6 numbers mapped
        continuously onto SO(3) (:func:`~sklearn_disentangle.harmony.warps.sixd_to_matrix`,
        Zhou et al. 2019) or an axis-angle vector through Rodrigues' formula (the
        reference). Ignored by the other kinds.
    content_from : {"canonical", "input"}, default="canonical"
        Rotating kinds: what the content posterior is computed from. ``"canonical"``: a
        second pass of the same encoder over the sample brought to the canonical frame by
        its predicted pose (averaged over the half-turns with ``resolve_half_turns``), so the
        content never has to be read off a rotated sample (see Notes); it costs two (3-D:
        four) more encoder passes per branch. ``"input"``: the encoder's pass over the
        observed sample, which predicts pose and content together (the reference).
    pose_search : "auto" or int, default="auto"
        ``rigid2d`` / ``rigid3d``: 0 (off), or the size of a global grid of rotations
        searched for every sample in training and inference: the rotation that best puts the
        decoding of the sample's content onto the sample (squared error; global grid, on
        2x-pooled data for sides >= 16, then the 4 best grid rotations each refined by three
        local rounds of halving step, the best refined one kept;
        :class:`~sklearn_disentangle.harmony.search.RotationSearch`) replaces the rotation
        head's, the content is read off the sample canonicalised with it, and the head is
        trained to predict it (see Notes). ``"auto"``: 1000 for ``rigid3d`` (a 25-degree grid,
        refined to about 3 degrees), 0 for the other kinds. ``affine2d`` and ``contrast``
        have no search. The search runs twice per sample: against a consensus template (the
        decoding of a running mean of the content codes), then against the decoding of the
        sample's own content read in the frame found.
    content_warmup : "auto" or int, default="auto"
        ``W``: the first ``W`` epochs train a plain autoencoder on the content (the code is
        its mean, not sampled, and the KL terms are off); over the next ``W`` epochs the
        sampling noise and the KL weights rise linearly from 0 to their full values. Counted
        in steps from the first fit, so warm starts and ``partial_fit`` resume the schedule.
        ``"auto"``: 6 (at most a fifth of ``max_epochs``) with a pose search, 0 without:
        with a search the code otherwise collapses in the first epochs, while the rotations
        are still wrong, and stays collapsed (see Notes).
    common_frame : bool, default=False
        Rotating kinds (``rigid2d``, ``affine2d``, ``rigid3d``): superpose the contents'
        canonical frames explicitly and report poses and canonical images in that frame.
        Nothing in Harmony's objective ties one content's frame to another's, although on
        simulated particles the trained frames already agreed with the least-squares
        superposition of the true structures (see Notes). After fit, the content means are grouped into up to 8 clusters
        (k-means), the decoded template of each cluster centre is superposed (rotation search
        and density centres, :meth:`~sklearn_disentangle.harmony.model.HarmonyModule.frame_alignment`)
        onto that of its nearest already aligned centre, starting from the most populated
        cluster, and each sample's pose and canonical image are expressed in the frame of that
        cluster's template (see Notes). False: each content's own frame.
    encoder_widths : tuple of int or None, default=None
        ``None``: an MLP ``(256, 256, 128)`` with tanh for the 2-D geometric kinds and flat
        input (the reference's is ``(512, 512, 512, 512, 128)``, see Notes); the reference's
        stride-2 (kernel 4) 3-D convolutions ``(32, 64, 128)`` then a dense 512 with tanh
        for ``rigid3d``; the reference's 2-D convolutions ``(32, 32, 64, 64, 128)`` then a
        dense 512 with ReLU for ``contrast``. Conv stacks are cut to as many convolutions as
        leave a side of at least 2 (32 px: four). For conv encoders the last entry is the
        dense layer.
    decoder_widths : tuple of int or None, default=None
        ``None``: the reversed ``encoder_widths``.
    max_epochs : int, default=100
        The reference's recipes: 100 (2-D particles), 200 (3-D).
    batch_size : "auto" or int, default="auto"
        ``"auto"``: 50 for ``rigid3d``, else 100 (the reference's defaults); the value used
        is ``batch_size_``.
    lr : float, default=1e-4
        Adam learning rate (the reference's).
    device : str, default="auto"
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling, augmentations and sampling.
    verbose : int, default=0
    callbacks : list or None, default=None
    validation_fraction : float, default=0.0
        Fraction held out to record ``valid_*`` terms; with ``checkpoint_dir`` the parameters
        with the lowest held-out loss are also saved there as ``best_params.pt``.
    checkpoint_dir : str or None, default=None
    warm_start : bool, default=False
    image_shape : tuple or None, default=None
        Shape of one image for flat ``(n_samples, n_features)`` input. Flat input without it
        has no geometry: the geometric kinds then train the same two-branch model with no
        pose and no augmentation (so the cross term is zero: a VAE with Harmony's loss), and
        :meth:`transform_params` raises; ``kind="contrast"`` keeps its gain pose.

    Attributes
    ----------
    net_ : DisentangleNet
        The trained net; ``net_.module_`` is a :class:`~sklearn_disentangle.harmony.model.HarmonyModule`.
    history_ : skorch.History
        Per epoch: ``train_loss`` and the terms ``train_recon_1``, ``train_recon_2``,
        ``train_cross``, ``train_kl_branches``, ``train_kl_prior``, with a pose search
        ``train_pose_head`` (``valid_*`` with a validation fraction); with a content warm-up
        ``variational`` (the noise and KL scale at the epoch's last step: 0, the ramp, 1).
    content_variance_ : ndarray of shape (z_dim,)
        Variance over the training samples of each content mean after the last fit call.
        A coordinate with variance <= 0.01 (against the prior's 1) is *inactive* (Burda et
        al., 2016): its means barely move from the prior's, so the decoder gets almost
        nothing from it. When every coordinate is inactive (and ``prior_kl_weight > 0``
        anchors the scale), fit warns: the content code has collapsed, or nearly, as with the
        reference arrangement on one simulated data set (Notes). A nearly collapsed code can
        still order the samples: on simulated subtomograms of two conformations whose domain
        swings 45 degrees, a code of variance 0.0005 gave a KMeans ARI of 0.945
        (``benchmarks/results/harmony_particles.md``, "Stop 25"), so check ``transform``'s
        output before discarding such a fit.
    gamma_ : float
        The ``gamma`` used.
    pose_search_ : int
        Size of the searched rotation grid (0: no search).
    content_warmup_ : int
        Epochs of the content warm-up used.
    frame_anchors_ : ndarray of shape (n_anchors, z_dim) or None
        ``common_frame``: the cluster centres of the training content means; each sample's
        frame correction is that of its nearest centre. None without a common frame.
    frame_matrices_ : ndarray of shape (n_anchors, k, k) or None
        Pose of the common frame in each anchor's decoding: its feature at ``r`` is at
        ``frame_matrices_[a] @ r + frame_shifts_[a]`` (identity for the reference anchor).
    frame_shifts_ : ndarray of shape (n_anchors, k) or None
    frame_reference_ : int or None
        Index of the anchor whose frame is the common one (the most populated cluster).
    batch_size_ : int
    max_shift_ : float
        Bound of the predicted shifts in pixels.
    augment_shift_ : float
    normalize_ : str or None
    decoder_output_ : str
    image_shape_ : tuple of int
    input_shape_ : tuple of int
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    sklearn_disentangle.O2VAE : rotation invariance built into the encoder, no pose output.
    sklearn_disentangle.harmony.warps : the pose conventions.

    Notes
    -----
    Pose convention: a pose ``(M, t)`` says that the canonical feature at ``r`` appears at
    ``M r + t`` in the observed image, coordinates ``(x, y[, z]) = (column, row[, slice])``
    relative to the pixel ``size // 2`` of every axis (RELION's and the
    :mod:`~sklearn_disentangle.cryoem` kernels' centre). In 2-D, ``M`` is RELION's in-plane
    rotation by ``angle_deg`` (``rotate_images(canonical, angle_deg)`` then shifting by
    ``(shift_x, shift_y)`` gives the observed image), times ``scale``; in 3-D it is RELION's
    matrix ``A`` of the Euler angles ``(rot, tilt, psi)``. For ``contrast`` the observed
    image is ``gain`` times the canonical one. Poses are identified only up to a global
    transformation of the canonical frame (the model picks its own canonical orientation,
    possibly mirrored for symmetric content), so compare them with ground truth up to a
    global offset. With ``common_frame`` that frame is the one of the most populated
    content cluster, and the other contents are superposed onto it.

    Deviations from the reference code (xulabs/aitom, ``harmony``), and why:

    - Scale (``affine2d``) has its own output (the reference reads it from the content
      outputs, which overlap; its ``--scale`` flag was never passed on).
    - Shifts are bounded (``max_shift * tanh``), scales and gains by smooth maps: the
      reference's unbounded shifts can move the content out of the frame, an all-zero
      canonical image being a degenerate minimiser.
    - The in-plane angle is predicted as a 2-vector whose direction gives the rotation,
      instead of one unbounded number: a continuous network can then follow full 360-degree
      turns of its input.
    - Half-turn resolution (``resolve_half_turns``, 2-D): without it, on simulated particles
      the encoder learns the in-plane angle well *modulo 180 degrees* and stays there
      (presumably because it first picks up the particle's principal axis, and a continuous
      map cannot move from that solution to a full-turn one), with the decoder learning the
      blurred average of both half-turns. Choosing per sample between the predicted rotation and
      its 180-degree turn by the reconstruction error (no gradient through the choice, as
      O2-VAE's flip search) lets the template become asymmetric and the angles consistent.
      ``rigid3d`` gets the same search over the four half-turns about the canonical axes
      (the sign ambiguities of a principal-axes frame): on 16^3 subtomograms rotated within
      60 degrees it lowered the median rotation error from 47 to 39 degrees and raised the
      shift correlations from 0.25-0.37 to 0.88-0.94 (``harmony_particles.md``).
    - Contrast image terms are measured in the observed frame by default
      (``contrast_frame="observed"``: ``|g rec - x|^2`` and ``|x_1 - (g_1 / g_2) x_2|^2``).
      Between canonical images ``x / g``, as in the reference, every term shrinks as
      ``1 / g^2``, so the predicted gains drift to the top of their range and the content
      code collapses: on gain-varied digits 0/1 (16 px, 1000 images, 50 epochs) KMeans ARI
      0.06 and gain correlation 0.81 in the canonical frame, 0.87 and 0.89 in the observed
      frame.
    - ``content_from="canonical"`` (the default; an addition): the reference reads the
      content from the same pass that predicts the pose, so the encoder must learn a
      rotation-*invariant* function of the raw sample while it learns the pose. On one of
      three simulated particle sets (``harmony_particles.md``, data seed 1) that never
      happened: the angles were learnt (mean resultant length 0.99 per conformation) but
      the 1-D content code collapsed (ARI <= 0.007 in eight runs: two model seeds, no prior
      KL, z_dim 2, lr 3e-4 for 150 epochs, KL and sampling warm-ups). Encoding the
      canonicalised sample instead (a spatial-transformer arrangement) gave ARI 0.99 there
      and 0.986 / 0.994 on the other two sets (0.998 / 1.000 with ``"input"``).
    - ``rotation_head="6d"`` (the default; an addition for ``rigid3d``): axis-angle outputs
      (the reference) are a discontinuous chart of SO(3) near half-turns; the 6-D
      Gram-Schmidt map has no such jump (Zhou et al., CVPR 2019). On 16^3 subtomograms
      rotated within 60 degrees (30 epochs, half-turn search on) the median rotation error
      was 39 degrees with it and 48 with axis-angle, whose shifts were not learnt.
    - ``pose_search`` (the default for ``rigid3d``; an addition): the reference, and this
      estimator without a search, left the rotations of uniformly rotated 16^3 subtomograms
      at chance in every CPU budget tried (median error 119-139 degrees against 127-130
      for random rotations), because the reconstruction error gives a pose head no useful
      gradient far from the answer. Cryo-EM programs search instead; so does this: per
      sample, every rotation of a global grid (1000 rotations, 25 degrees apart) is scored
      by the squared error between the sample and a template put into that rotation, the
      best one is refined locally to about 3 degrees, and it is used as the pose (no
      gradient through the choice). As in a consensus refinement followed by 3-D
      classification, the search runs twice: against one consensus template (the decoding
      of a running mean of the content codes), then, after the content is read in the frame
      found, against the decoding of the sample's own content. A search needs a shift that
      does not depend on the rotation, so the shift becomes the sample's density centre
      (:func:`~sklearn_disentangle.harmony.search.density_centre`) plus the head's bounded
      correction; with the head's shift alone the search did not start on one of two data
      sets. The rotation head is kept and trained to predict the searched rotation (it
      stays 60-107 degrees from it). The global round's interpolation weights (``n
      rotations x V / 2^k x 2^k`` numbers for ``V`` voxels, pooled when sides are >= 16)
      are built once per shape; a 1000-volume 16^3 epoch took about 40 s on one CPU thread.
    - ``content_warmup`` (on with a search; an addition): with the search alone, the
      content code collapsed in the first epoch (KL to the prior 0.001-0.01, the decoder
      ignoring the code) while the rotations were still wrong, and never recovered (ARI <=
      0.05 on 1000 subtomograms of two conformations), although the same networks given
      the true poses separate them after one epoch (ARI 1.0): the zero-gradient saddle of
      VAEs. Training first as a plain autoencoder on the content breaks it; switching to
      the full objective at once let the code collapse again on one data seed (ARI 0.04),
      and ramping the noise and KL weights in did not on three of four seeds (ARI 1.000;
      the fourth ended at 0.085; ``harmony_particles.md``, "Stop 19"). On that fourth set the
      code did not carry the conformation even after the autoencoder epochs (ARI 0.000):
      a third of the poses were a half-turn off; with the search refining 4 candidates it
      separates the conformations (ARI 1.000, "Stop 22").
    - ``common_frame`` (an addition, off by default): nothing in Harmony's objective ties
      the canonical frame of one content to another's. On the simulated particles the
      trained frames of the two conformations differ from the simulator's body frame (about
      50 and 180 degrees in 2-D, 52-85 in 3-D), but that frame cannot be recovered from the
      images: the least-squares superposition of the two *true* structures is -46, -40,
      -74 (2-D, three data seeds) and 105 (3-D) degrees from it, and it is ambiguous: a
      second superposition is nearly as good (3-D: 90 degrees, normalised cross-correlation
      0.850 against 0.865; 2-D seed 2: -179 degrees, 0.773 against 0.811). In 3-D the
      trained poses of the two conformations agree with one of the two to 3.3-4.1 degrees
      (four data seeds, ``harmony_particles.md``, "Stop 23"); in 2-D with the optimum to
      3.9 / 6.5 degrees (Fisher-Lee correlation 0.98), and on the third data set only with
      the weaker one (5.2 degrees; 53.7 from the optimum).
      ``common_frame=True`` superposes explicitly: after fit the decoded
      templates of up to 8 k-means centres of the content means are superposed, as class
      averages are: least-squares rotation about the templates' density centres (the 32
      best rotations of a global grid each refined by six local rounds, the best kept:
      refining the grid's argmax alone stopped at the weaker superposition), each centre
      onto its nearest already aligned one (similar templates, so no ambiguous alignment
      between distant contents decides the frame of near ones), starting from the most
      populated cluster. A sample takes the correction
      of its nearest centre, so the poses of one cluster move together and stay
      consistent. The superposition is least squares over the whole template: for
      contents that differ a lot it need not be the frame of their shared rigid part (see
      above for the simulated molecule, whose domain swings 90 degrees). Canonical images from :meth:`inverse_transform` are resampled
      into the common frame (one more interpolation, except for the reference cluster);
      images in a pose are rendered with one resampling. Measured against the true
      structures' optimal superposition: 2-D median errors 3.7 / 2.4 / 7.7 degrees
      against 3.9 / 6.5 / 53.7 without (Fisher-Lee 0.98 / 1.00 / 0.93; refining only the
      grid's argmax: 3.7 / 2.8 / 13.4, 0.98 / 1.00 / 0.89): on the third data set it moves
      the frames from the weaker superposition to the optimum. 3-D (four data seeds): 4.2 /
      3.9 / 6.1 / 3.3 degrees, three of them at the optimum (one moved there from the second
      superposition); on the fourth the decoded templates themselves superpose best near
      the second (an exhaustive refinement of all 1000 grid rotations agrees), so which of
      two near-equal superpositions is found depends on the trained templates. It stays
      off by default: it is one more fitted search (about 1 s in 2-D, 30-45 s for 16^3
      volumes on one CPU thread), its correction is constant per content cluster (poses
      step between clusters when the content varies continuously), and which of two
      near-equal superpositions a user wants cannot be decided from the images.
    - The default 2-D MLP is shallower than the reference's, ``(256, 256, 128)`` instead of
      ``(512, 512, 512, 512, 128)``: on the simulated 32 px particles the reference's did
      not learn the angles within 100 epochs (ARI 0.06 with content from the input, 0.001
      with content from the canonical frame, lr 1e-3), the shallower one did in every run
      (lr 1e-3 and the reference's 1e-4).
    - A prior KL term (``prior_kl_weight``, default 1) is available; the reference has none.
    - The decoder output defaults to linear for z-scored data (the reference's tanh cannot
      reach the |x| > 1 values of z-scored images) and sigmoid only for data in [0, 1].
    - Warps compose rotation, scale and shift into one resampling (the reference resamples
      two or three times, with kornia APIs that no longer exist), on the input's device,
      about the pixel ``size // 2`` of each axis: right for odd and non-cubic shapes (the
      reference used ``H / 2`` and passed 3-D centres in the wrong axis order).
    - ``transform`` returns the content mean with no augmentation and no sampling (the
      reference read branch 1 of a randomly augmented, sampled forward pass); the
      evaluation outputs work (the reference's 2-D evaluation crashed).
    - The held-out loss (not the training loss, as in the reference's 3-D loop) picks the
      best checkpoint; the loss is the batch mean, batches are shuffled, the last smaller
      batch is kept, and training runs ``max_epochs`` epochs (the reference ran one more).
    - The contrast networks have no batch normalisation (it made outputs depend on batch
      composition and fails on one-sample batches); contrast is a pure gain with no
      clipping to [0, 1].

    Measured so far (``benchmarks/results/harmony_particles.md``, CPU): on simulated 32 px
    particles of two conformations seen from one direction under in-plane rotations
    (0-360 degrees), shifts and noise (SNR 2), the defaults (100 epochs) separate the
    conformations with KMeans on ``transform`` (ARI 1.000 / 0.996 / 0.996, three seeds) where a
    beta-VAE does not (0.001), and recover the angles up to one offset per conformation
    (mean resultant length 0.94-1.00); against the least-squares superposition of the true
    structures, both conformations' angles agree up to one offset on two of three data
    sets (Fisher-Lee correlation 0.98, median error 3.9 / 6.5 degrees; the third agrees
    with a weaker superposition), and on all three with ``common_frame=True`` (Fisher-Lee
    0.98 / 1.00 / 0.93, median error 3.7 / 2.4 / 7.7 degrees). ``contrast`` separates particle conformations
    under gains of 0.2-1 (ARI 1.0, beta-VAE 0.0 with one latent). ``rigid3d`` on 1000
    uniformly rotated 16^3 subtomograms of two conformations (SNR 2, 30 epochs) with the
    defaults (search refining 4 candidates, content warm-up), four data seeds: ARI 1.000 on
    all four (seed 3 collapsed to 0.085 when the search refined only the grid's argmax;
    beta-VAE 0.002 or less), rotations per conformation to a median 2.7-4.0 degrees with
    0-2 % of the samples a half-turn off (argmax search: 5.6-22.1 degrees for the majority,
    27-43 % a half-turn off about the decoded templates' pseudo-two-fold axis), shifts
    correlated 0.89-0.91; training took 2.6-2.9 times as long as with the argmax. The two
    conformations' poses share one frame, to within 3.3-4.1 degrees, in one of the true
    structures' two near-equal superpositions (the simulator's body frame is not
    determined by the images). Without a search ``rigid3d`` learns rotations within 60 degrees only
    partly (median error 37 degrees) and nothing for uniform rotations.

    Smaller conformational changes need longer training. With the simulated molecule's
    domain swinging 45 instead of 90 degrees (its two conformations then have one clear
    least-squares superposition), the poses are as good: in 3-D (30 epochs, data seeds 0, 1,
    3) both conformations share that frame to a median 3.4-4.0 degrees after one offset.
    But the content code leaves its collapsed start later: 2-D ARI 0.208 / 0.618 / 0.142
    after 100 epochs and 0.955 / 0.982 / 1.000 after 200 (the KL to the prior rose from
    0.15-0.45 to 1.3-1.9 nats between epochs 70 and 160); 3-D ARI 0.136 / 0.945 / 0.984
    after 30 epochs, with fit warning that the code is inactive. A learning rate of 1e-3,
    ``prior_kl_weight=0``, a 30-epoch content warm-up, ``z_dim=2`` or the 2-D pose search
    did not make 100 epochs enough (ARI 0.08-0.61 on the hardest set). When conformations
    differ little, train longer and watch ``history_[:, "train_kl_prior"]`` and
    ``content_variance_``.

    References
    ----------
    Uddin, Howe, Zeng, Xu. Harmony: a generic unsupervised approach for disentangling
    semantic content from parameterized transformations. CVPR 2022, 20646-20655.
    https://openaccess.thecvf.com/content/CVPR2022/html/Uddin_Harmony_A_Generic_Unsupervised_Approach_for_Disentangling_Semantic_Content_From_CVPR_2022_paper.html

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle import HarmonyEstimator
    >>> X = np.random.default_rng(0).normal(size=(32, 16, 16)).astype("float32")
    >>> est = HarmonyEstimator(z_dim=2, encoder_widths=(32, 16), max_epochs=1, batch_size=16,
    ...                        random_state=0).fit(X)
    >>> est.transform(X).shape
    (32, 2)
    >>> list(est.transform_params(X[:2]).columns)
    ['angle_deg', 'shift_x', 'shift_y']
    >>> est.inverse_transform(est.transform(X[:2]), params=est.transform_params(X[:2])).shape
    (2, 16, 16)
    """

    _parameter_constraints = {
        **LatentTransformer._parameter_constraints,
        "kind": [Options(KINDS)],
        "gamma": [Options(("auto",)), Interval(Real, 0, None, closed="neither")],
        "prior_kl_weight": [Interval(Real, 0, None)],
        "prior_free_bits": [Interval(Real, 0, None)],
        "cross_weight_in_gamma": ["boolean"],
        "normalize": [Options(("auto", "per_sample")), None],
        "decoder_output": [Options(("auto", "linear", "tanh", "sigmoid"))],
        "max_shift": [Options(("auto",)), Interval(Real, 0, None)],
        "max_scale": [Interval(Real, 1, None, closed="neither")],
        "gain_range": [tuple, list],
        "augment_rotation": [Interval(Real, 0, 180)],
        "augment_shift": [Options(("auto",)), Interval(Real, 0, None)],
        "augment_scale": [tuple, list],
        "augment_gain": [tuple, list],
        "resolve_half_turns": ["boolean"],
        "contrast_frame": [Options(("observed", "canonical"))],
        "rotation_head": [Options(ROTATION_HEADS)],
        "content_from": [Options(("canonical", "input"))],
        "pose_search": [Options(("auto",)), Interval(Integral, 0, None)],
        "content_warmup": [Options(("auto",)), Interval(Integral, 0, None)],
        "common_frame": ["boolean"],
        "encoder_widths": [tuple, list, None],
        "decoder_widths": [tuple, list, None],
        "batch_size": [Options(("auto",)), Interval(Integral, 1, None)],
    }

    def __init__(self, kind="rigid2d", z_dim=1, *, gamma="auto", prior_kl_weight=1.0, prior_free_bits=0.0,
                 cross_weight_in_gamma=True,
                 normalize="auto", decoder_output="auto", max_shift="auto", max_scale=2.0, gain_range=(0.5, 2.0),
                 augment_rotation=90.0, augment_shift="auto", augment_scale=(1.0, 1.5), augment_gain=(1.0, 1.5),
                 resolve_half_turns=True, contrast_frame="observed", rotation_head="6d",
                 content_from="canonical", pose_search="auto", content_warmup="auto", common_frame=False,
                 encoder_widths=None, decoder_widths=None,
                 max_epochs=100, batch_size="auto", lr=1e-4,
                 device="auto", random_state=None, verbose=0, callbacks=None, validation_fraction=0.0,
                 checkpoint_dir=None, warm_start=False, image_shape=None):
        self.kind = kind
        self.z_dim = z_dim
        self.gamma = gamma
        self.prior_kl_weight = prior_kl_weight
        self.prior_free_bits = prior_free_bits
        self.cross_weight_in_gamma = cross_weight_in_gamma
        self.normalize = normalize
        self.decoder_output = decoder_output
        self.max_shift = max_shift
        self.max_scale = max_scale
        self.gain_range = gain_range
        self.augment_rotation = augment_rotation
        self.augment_shift = augment_shift
        self.augment_scale = augment_scale
        self.augment_gain = augment_gain
        self.resolve_half_turns = resolve_half_turns
        self.contrast_frame = contrast_frame
        self.rotation_head = rotation_head
        self.content_from = content_from
        self.pose_search = pose_search
        self.content_warmup = content_warmup
        self.common_frame = common_frame
        self.encoder_widths = encoder_widths
        self.decoder_widths = decoder_widths
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.validation_fraction = validation_fraction
        self.checkpoint_dir = checkpoint_dir
        self.warm_start = warm_start
        self.image_shape = image_shape

    # ------------------------------------------------------------------ shape and input
    @property
    def _spatial_dims(self):
        return 3 if self.kind == "rigid3d" else 2

    def _validate_input(self, X, reset):
        if isinstance(X, ParticleStack):
            if self.kind == "rigid3d":
                raise ValueError("A ParticleStack holds 2-D particle images; kind='rigid3d' needs volumes "
                                 "(n, D, H, W). Use kind='rigid2d' (or 'affine2d') for particles.")
            X = X.get_images()  # a new float32 array; the stack is not modified
        return super()._validate_input(X, reset)

    # ------------------------------------------------------------------ hooks
    @classmethod
    def _tiny_params(cls):
        return {"z_dim": 2, "max_epochs": 2, "batch_size": 16, "lr": 1e-3, "random_state": 0,
                "encoder_widths": (32, 16)}

    def _check_method_params(self, X):
        for name in ("encoder_widths", "decoder_widths"):
            widths = getattr(self, name)
            if widths is not None and (len(widths) == 0 or not all(
                    isinstance(w, (Integral, np.integer)) and not isinstance(w, bool) and w >= 1 for w in widths)):
                raise ValueError(f"{name} must be a non-empty tuple of positive ints or None, got {widths!r}.")
        self._gain_range = _pair(self.gain_range, "gain_range")
        self._augment_scale = _pair(self.augment_scale, "augment_scale")
        self._augment_gain = _pair(self.augment_gain, "augment_gain")
        spatial = self.input_shape_[1:] if len(self.input_shape_) > 1 else ()
        if self.kind == "rigid3d" and len(spatial) != 3:
            raise ValueError("kind='rigid3d' needs volumes: X of shape (n, D, H, W) or (n, C, D, H, W), or flat X "
                             f"with image_shape=(D, H, W); got per-sample shape {self.image_shape_}.")
        if self.pose_search == "auto":
            self.pose_search_ = 1000 if self.kind == "rigid3d" else 0
        else:
            self.pose_search_ = int(self.pose_search)
            if self.pose_search_ and self.kind not in ("rigid2d", "rigid3d"):
                raise ValueError(f"pose_search searches rotations: it applies to kind='rigid2d' or 'rigid3d', not "
                                 f"{self.kind!r}; use pose_search=0 (or 'auto').")
        if self.content_warmup == "auto":
            self.content_warmup_ = min(AUTO_CONTENT_WARMUP, self.max_epochs // 5) if self.pose_search_ else 0
        else:
            self.content_warmup_ = int(self.content_warmup)
        self.batch_size_ = (50 if self.kind == "rigid3d" else 100) if self.batch_size == "auto" else int(self.batch_size)
        n_train = len(X) - (int(round(self.validation_fraction * len(X))) if self.validation_fraction > 0 else 0)
        self._steps_per_epoch = max(1, math.ceil(n_train / self.batch_size_))
        self.gamma_ = float(auto_gamma(max(n_train, 1), self.batch_size_)) if self.gamma == "auto" else float(self.gamma)
        if self.max_shift == "auto":
            self.max_shift_ = min(spatial) / 4.0 if spatial else 0.0
        else:
            self.max_shift_ = float(self.max_shift)
        if self.augment_shift == "auto":
            self.augment_shift_ = 4.0 if self.kind == "rigid3d" else 3.0
        else:
            self.augment_shift_ = float(self.augment_shift)
        if self.normalize == "auto":
            self.normalize_ = None if self.kind == "contrast" else "per_sample"
        else:
            self.normalize_ = self.normalize
        if self.kind == "contrast" and self.normalize_ == "per_sample":
            raise ValueError("kind='contrast' with normalize='per_sample' would z-score away the gain the model "
                             "must explain; use normalize=None (or 'auto').")
        lo, hi = float(X.min()), float(X.max())
        in_unit = self.normalize_ is None and lo >= 0.0 and hi <= 1.0
        if self.decoder_output == "auto":
            self.decoder_output_ = "sigmoid" if in_unit else "linear"
        else:
            if self.decoder_output == "sigmoid" and not in_unit:
                raise ValueError(
                    "decoder_output='sigmoid' needs the model to see values in [0, 1]: normalize=None and X in "
                    f"[0, 1] (got normalize={self.normalize_!r}, X in [{lo:.4g}, {hi:.4g}]); use 'linear' or 'auto'.")
            self.decoder_output_ = self.decoder_output

    def _build_module(self, input_shape):
        flat = len(input_shape) == 1
        widths = self.encoder_widths
        if widths is None:
            if flat or self.kind in ("rigid2d", "affine2d"):
                widths = _MLP_WIDTHS
            else:
                widths = _default_conv_widths(_CONV3D_WIDTHS if self.kind == "rigid3d" else _CONV2D_WIDTHS,
                                              input_shape[1:])
        return HarmonyModule(
            input_shape, self.z_dim, kind=self.kind, encoder_widths=tuple(widths),
            decoder_widths=None if self.decoder_widths is None else tuple(self.decoder_widths),
            gamma=self.gamma_, prior_kl_weight=self.prior_kl_weight, prior_free_bits=self.prior_free_bits,
            cross_weight_in_gamma=self.cross_weight_in_gamma,
            normalize=self.normalize_ == "per_sample", decoder_output=self.decoder_output_,
            max_shift=self.max_shift_, max_scale=self.max_scale, gain_range=self._gain_range,
            augment_rotation=self.augment_rotation, augment_shift=self.augment_shift_,
            augment_scale=self._augment_scale, augment_gain=self._augment_gain,
            resolve_half_turns=self.resolve_half_turns, contrast_frame=self.contrast_frame,
            rotation_head=self.rotation_head, content_from=self.content_from, pose_search=self.pose_search_)

    def _train(self, net, X, epochs):
        super()._train(net, X, epochs)
        mu = self._infer(X, lambda m, xb: m.encode(xb)["z_mean"])  # X: the validated training array
        self.content_variance_ = mu.astype(np.float64).var(axis=0)
        self._fit_common_frame(mu)
        if self.prior_kl_weight > 0 and not (self.content_variance_ > 0.01).any():
            warnings.warn(
                f"HarmonyEstimator: the content code is inactive (variance of the content means over the "
                f"training samples {np.array2string(self.content_variance_, precision=4)}, <= 0.01 in every "
                "dimension against a prior variance of 1): the decoder barely uses it, and transform may not tell "
                "the samples apart (a nearly collapsed code can still separate groups: check its output). Train "
                "longer, raise z_dim, use content_from='canonical' if it was 'input', or check that the samples "
                "differ in more than pose.", UserWarning, stacklevel=4)

    def _fit_common_frame(self, mu):
        """Anchor codes of the training content means and the common frame's pose in each one's decoding.

        The anchors are k-means centres; starting from the most populated one (the reference),
        each anchor not yet aligned that is nearest to an aligned one is superposed onto it, and
        the poses compose along this tree, so each alignment compares similar templates.
        """
        self.frame_anchors_ = self.frame_matrices_ = self.frame_shifts_ = self.frame_reference_ = None
        module = self.net_.module_
        if not self.common_frame or module.frame_search is None:
            return
        sub = np.asarray(mu[::max(1, math.ceil(len(mu) / 4096))], dtype=np.float64)
        n_anchors = min(FRAME_ANCHORS, len(np.unique(sub, axis=0)))
        km = KMeans(n_anchors, n_init=3, random_state=0).fit(sub)
        anchors = km.cluster_centers_.astype(np.float32)
        root = int(np.bincount(km.labels_, minlength=n_anchors).argmax())
        dist = np.linalg.norm(anchors[:, None] - anchors[None], axis=-1)
        dim = module.frame_search.k
        matrices = np.tile(np.eye(dim, dtype=np.float32), (n_anchors, 1, 1))
        shifts = np.zeros((n_anchors, dim), np.float32)
        done = [root]
        with self._eval_module() as m:
            while len(done) < n_anchors:
                rest = [j for j in range(n_anchors) if j not in done]
                i, j = min(((i, j) for i in done for j in rest), key=lambda ij: dist[ij])
                z = torch.from_numpy(anchors[[j, i]]).to(self.net_.device)
                step = m.frame_alignment(z[:1], z[1:])  # anchor i's template in anchor j's decoding
                pose = compose_poses({k: v.cpu() for k, v in step.items()},
                                     {"matrix": torch.from_numpy(matrices[i:i + 1]),
                                      "shift": torch.from_numpy(shifts[i:i + 1])})
                matrices[j], shifts[j] = pose["matrix"][0].numpy(), pose["shift"][0].numpy()
                done.append(j)
        self.frame_anchors_, self.frame_matrices_, self.frame_shifts_ = anchors, matrices, shifts
        self.frame_reference_ = root

    def _frame_correction(self, Z):
        """Per code, the pose of the common frame in its decoding (its nearest anchor's); None without one."""
        if getattr(self, "frame_anchors_", None) is None:
            return None
        Z = np.asarray(Z, dtype=np.float32)
        nearest = ((Z[:, None, :] - self.frame_anchors_[None]) ** 2).sum(-1).argmin(1)
        return {"matrix": torch.from_numpy(self.frame_matrices_[nearest]),
                "shift": torch.from_numpy(self.frame_shifts_[nearest])}

    def _make_net(self, module, device):
        net = super()._make_net(module, device)
        net.set_params(batch_size=self.batch_size_)
        return net

    def _extra_callbacks(self):
        callbacks = []
        if self.content_warmup_:
            # counted in training steps from the start of the first fit, so warm starts resume it
            steps = self.content_warmup_ * self._steps_per_epoch  # autoencoder, then a ramp as long
            callbacks.append(("content_warmup", ParamSchedule(
                "variational", LinearWarmup(1.0, n_steps=steps, delay=steps))))
        if self.checkpoint_dir is not None and self.validation_fraction > 0:
            callbacks.append(("best_checkpoint", Checkpoint(
                dirname=os.fspath(self.checkpoint_dir), monitor="valid_loss_best", f_params="best_params.pt",
                f_optimizer=None, f_criterion=None, f_history=None, load_best=False)))
        return callbacks

    # ------------------------------------------------------------------ inference
    def _infer(self, X, fn):
        """Apply ``fn(module, batch) -> tensor or dict of tensors`` in eval mode without grad; NumPy out."""
        chunks = []
        with self._eval_module() as module:
            for start in range(0, len(X), self.batch_size_):
                xb = to_batch_tensor(X[start:start + self.batch_size_]).to(self.net_.device)
                chunks.append(fn(module, xb))

        def cat(parts):
            return np.concatenate([p.detach().to("cpu", torch.float32).numpy() for p in parts], axis=0)

        if isinstance(chunks[0], dict):
            return {k: cat([c[k] for c in chunks]) for k in chunks[0]}
        return cat(chunks)

    def _map_batches(self, X, fn):
        return self._infer(X, fn)

    def score(self, X, y=None):
        """Negative mean Harmony loss on X (higher is better).

        The augmentation inside the objective is drawn from a generator seeded by
        ``random_state``, so the score of a fitted model on fixed X is reproducible.

        Parameters
        ----------
        X : array-like with the per-sample shape seen at fit
        y : None
            Ignored.

        Returns
        -------
        score : float

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_disentangle import HarmonyEstimator
        >>> X = np.random.default_rng(0).normal(size=(16, 12, 12)).astype("float32")
        >>> est = HarmonyEstimator(encoder_widths=(8,), max_epochs=1, random_state=0).fit(X)
        >>> est.score(X) == est.score(X)
        True
        """
        check_is_fitted(self)
        Xv = self._validate_input(X, reset=False)
        with self._rng(self._seed, self.net_.device, fresh=True):
            losses = self._infer(Xv, lambda m, xb: m.loss(m(xb), xb)["loss"].reshape(1).expand(len(xb)))
        return -float(np.mean(losses.astype(np.float64)))

    def transform_params(self, X):
        """The pose of each sample, predicted by the encoder (no augmentation).

        Parameters
        ----------
        X : array-like or ParticleStack with the per-sample shape seen at fit

        Returns
        -------
        params : pandas.DataFrame of shape (n_samples, n_params)
            ``rigid2d``: ``angle_deg`` (in (-180, 180]), ``shift_x``, ``shift_y`` (pixels);
            ``affine2d``: also ``scale``; ``rigid3d``: RELION Euler angles ``rot``, ``tilt``,
            ``psi`` (degrees), the matrix ``r11`` ... ``r33`` and ``shift_x``, ``shift_y``,
            ``shift_z`` (voxels); ``contrast``: ``gain``. See the Notes of the class for the
            convention. With ``common_frame`` the rotating kinds' poses are in the common frame
            (each sample's pose composed with its nearest anchor's correction).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_disentangle import HarmonyEstimator
        >>> X = np.random.default_rng(0).normal(size=(16, 8, 8, 8)).astype("float32")
        >>> est = HarmonyEstimator("rigid3d", encoder_widths=(4, 8), max_epochs=1, random_state=0).fit(X)
        >>> list(est.transform_params(X).columns)[:3]
        ['rot', 'tilt', 'psi']
        """
        check_is_fitted(self)
        Xv = self._validate_input(X, reset=False)
        kind = self.net_.module_.pose_kind
        if kind == "none":
            raise ValueError(
                "This HarmonyEstimator was fitted on flat features without image_shape, so it has no pose; "
                "fit it on images (n, H, W) / volumes, or pass image_shape=(H, W) with flat input.")
        p = self._infer(Xv, lambda m, xb: m.pose(xb, with_content=True))
        correction = self._frame_correction(p.pop("z_mean"))
        if correction is not None:  # into the common frame
            own = {k: torch.from_numpy(v).double() for k, v in p.items()}
            p = {k: v.numpy() for k, v in compose_poses(
                own, {k: v.double() for k, v in correction.items()}).items()}
        cols = {}
        if kind in ("rigid2d", "affine2d"):
            cols["angle_deg"] = np.rad2deg(p["angle"].astype(np.float64))
            cols["shift_x"], cols["shift_y"] = p["shift"][:, 0], p["shift"][:, 1]
            if kind == "affine2d":
                cols["scale"] = p["scale"]
        elif kind == "rigid3d":
            mats = p["matrix"].astype(np.float64)
            euler = matrix_to_euler(torch.from_numpy(mats)).numpy()
            cols["rot"], cols["tilt"], cols["psi"] = euler[:, 0], euler[:, 1], euler[:, 2]
            for name, (i, j) in zip(_MATRIX_COLUMNS, [(i, j) for i in range(3) for j in range(3)]):
                cols[name] = mats[:, i, j]
            for a, axis in enumerate("xyz"):
                cols[f"shift_{axis}"] = p["shift"][:, a]
        else:
            cols["gain"] = p["gain"]
        return pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in cols.items()})

    def _pose_from_params(self, params, n):
        """Tensors of a pose from a ``transform_params``-style DataFrame (validated)."""
        kind = self.net_.module_.pose_kind
        if kind == "none":
            raise ValueError("This HarmonyEstimator has no pose (fitted on flat features without image_shape); "
                             "call inverse_transform without params.")
        if not isinstance(params, pd.DataFrame):
            raise TypeError(f"params must be a pandas DataFrame as returned by transform_params, got "
                            f"{type(params).__name__}.")
        if len(params) != n:
            raise ValueError(f"params has {len(params)} rows but there are {n} codes; pass one pose per code.")
        if kind in ("rigid2d", "affine2d"):
            need = ["angle_deg", "shift_x", "shift_y"] + (["scale"] if kind == "affine2d" else [])
        elif kind == "rigid3d":
            need = ["shift_x", "shift_y", "shift_z"]
            need += list(_MATRIX_COLUMNS) if set(_MATRIX_COLUMNS) <= set(params.columns) else ["rot", "tilt", "psi"]
        else:
            need = ["gain"]
        missing = [c for c in need if c not in params.columns]
        if missing:
            raise ValueError(f"params lacks the column(s) {missing} of a kind={self.kind!r} pose; pass the "
                             "DataFrame returned by transform_params (or one with the same columns).")
        values = params[need].to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("params holds NaN or infinite values.")
        col = {c: torch.tensor(params[c].to_numpy(dtype=np.float32, copy=True)) for c in need}
        if kind in ("rigid2d", "affine2d"):
            matrix = rotation_2d(torch.deg2rad(col["angle_deg"]))
            if kind == "affine2d":
                if not (col["scale"] > 0).all():
                    raise ValueError("params['scale'] must be positive.")
                matrix = matrix * col["scale"][:, None, None]
            return {"matrix": matrix, "shift": torch.stack([col["shift_x"], col["shift_y"]], 1)}
        if kind == "rigid3d":
            if "r11" in col:
                matrix = torch.stack([col[c] for c in _MATRIX_COLUMNS], 1).reshape(-1, 3, 3)
            else:
                matrix = euler_to_matrix(torch.stack([col["rot"], col["tilt"], col["psi"]], 1))
            return {"matrix": matrix, "shift": torch.stack([col["shift_x"], col["shift_y"], col["shift_z"]], 1)}
        if not (col["gain"] > 0).all():
            raise ValueError("params['gain'] must be positive.")
        return {"gain": col["gain"]}

    def inverse_transform(self, X, params=None):
        """Decode content codes to canonical images, optionally put back into given poses.

        Parameters
        ----------
        X : array-like of shape (n_samples, z_dim)
            Content codes, e.g. from ``transform`` or a traversal.
        params : pandas.DataFrame or None, default=None
            Poses as returned by :meth:`transform_params` (one row per code). ``None``
            returns the canonical images.

        Returns
        -------
        X_original : ndarray of shape (n_samples, *image_shape_), dtype float32
            In the units the model sees (z-scored per sample when ``normalize_`` is
            ``"per_sample"``). With a common frame (``frame_anchors_`` set) canonical images
            are in that frame and ``params`` are read as poses in it, as
            :meth:`transform_params` returns them.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_disentangle import HarmonyEstimator
        >>> X = np.random.default_rng(0).uniform(size=(16, 3, 8, 8)).astype("float32")
        >>> est = HarmonyEstimator("contrast", encoder_widths=(4, 8), max_epochs=1, random_state=0).fit(X)
        >>> est.inverse_transform(est.transform(X[:2])).shape
        (2, 3, 8, 8)
        """
        Z = self._check_codes(X)
        pose = None if params is None else self._pose_from_params(params, len(Z))
        correction = self._frame_correction(Z)
        if pose is not None and correction is not None:  # the pose in the frame of each code's decoding
            pose = compose_poses(pose, invert_pose(correction))
        elif correction is not None:  # canonical images in the common frame
            pose = invert_pose(correction)
        out = []
        with self._eval_module() as module:
            for start in range(0, len(Z), self.batch_size_):
                sl = slice(start, start + self.batch_size_)
                images = module.decode(torch.from_numpy(Z[sl]).to(self.net_.device))
                if pose is not None:
                    images = module.apply_pose(images, {k: v[sl].to(images) for k, v in pose.items()})
                out.append(images.to("cpu", torch.float32).numpy())
        return np.concatenate(out).reshape((len(Z),) + tuple(self.image_shape_))
